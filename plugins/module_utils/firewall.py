# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NWFilterFirewall: libvirt network filters, given a Host (the blueprint's last work item).

Structured rules become nwfilter XML (built with lxml and checked against
libvirt's ``nwfilter.rng``); filters are defined idempotently (the UUID kept,
compared semantically), removed only when nothing uses them, and the per-guest
base filter nova's firewall set up is one call. No Ansible imports: the module
reads its parameters and passes plain values here.
"""

from __future__ import annotations

import re
from typing import Any

from ansible_collections.hypervisor.libvirt.plugins.module_utils import model, xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    InvalidSpec,
    NotFound,
    OperationFailed,
)
from ansible_collections.hypervisor.libvirt.plugins.module_utils.schema import Dict, Enum, List, Str
from ansible_collections.hypervisor.libvirt.plugins.module_utils.plan import Plan, difference

ACTIONS = ("drop", "reject", "accept", "return", "continue")
DIRECTIONS = ("in", "out", "inout")
DEFAULT_RULE_PRIORITY = 500
_STP_VALIDATE_MAX = 6  # libxml2 needs 2^n steps for n stp attributes (non-interleaved optionals)

# Default filter priority by chain prefix, as libvirt assigns it (root: 0, not printed).
CHAIN_PRIORITIES = (("stp", -810), ("mac", -800), ("vlan", -750), ("ipv4", -700),
                    ("ipv6", -600), ("arp", -500), ("rarp", -400))

# Attribute groups, named after the defines of libvirt's nwfilter.rng.
_MATCH = ("match",)
_SRCMAC = ("srcmacaddr",)
_SRCMACMASK = _SRCMAC + ("srcmacmask",)
_L2 = _SRCMACMASK + ("dstmacaddr", "dstmacmask")
_IP_P1 = ("srcipaddr", "srcipmask", "dstipaddr", "dstipmask")
_IP_P2 = ("srcipfrom", "srcipto", "dstipfrom", "dstipto", "dscp", "connlimit-above", "state",
          "ipset", "ipsetflags")
_IPV6_P2 = ("srcipfrom", "srcipto", "dstipfrom", "dstipto", "dscp")
_PORTS = ("srcportstart", "srcportend", "dstportstart", "dstportend")
_COMMENT = ("comment",)
_STP = ("type", "flags", "root-priority", "root-priority-hi", "root-address", "root-address-mask",
        "root-cost", "root-cost-hi", "sender-priority", "sender-priority-hi", "sender-address",
        "sender-address-mask", "port", "port-hi", "age", "age-hi", "max-age", "max-age-hi",
        "hello-time", "hello-time-hi", "forward-delay", "forward-delay-hi")
_ARP = ("arpsrcmacaddr", "arpsrcipaddr", "arpdstmacaddr", "arpdstipaddr", "hwtype", "opcode",
        "protocoltype", "gratuitous")
_L4 = _MATCH + _SRCMAC + _IP_P1 + _IP_P2
_L4V6 = _MATCH + _SRCMAC + _IP_P1 + _IPV6_P2

# protocol element -> the attributes nwfilter.rng allows on it
PROTOCOLS: dict[str, tuple[str, ...]] = {
    "mac": _MATCH + _L2 + ("protocolid",) + _COMMENT,
    "vlan": _MATCH + _L2 + ("vlanid", "encap-protocol") + _COMMENT,
    "stp": _MATCH + _SRCMACMASK + _STP + _COMMENT,
    "arp": _MATCH + _L2 + _ARP + _COMMENT,
    "rarp": _MATCH + _L2 + _ARP + _COMMENT,
    "ip": _MATCH + _L2 + _IP_P1 + _PORTS + ("protocol", "dscp") + _COMMENT,
    "ipv6": _MATCH + _L2 + _IP_P1 + _PORTS + ("protocol", "type", "typeend", "code", "codeend") + _COMMENT,
    "tcp": _L4 + _PORTS + ("flags",) + _COMMENT,
    "udp": _L4 + _PORTS + _COMMENT,
    "sctp": _L4 + _PORTS + _COMMENT,
    "icmp": _L4 + ("type", "code") + _COMMENT,
    "igmp": _L4 + _COMMENT,
    "all": _L4 + _COMMENT,
    "esp": _L4 + _COMMENT,
    "ah": _L4 + _COMMENT,
    "udplite": _L4 + _COMMENT,
    "tcp-ipv6": _L4V6 + _PORTS + ("flags",) + _COMMENT,
    "udp-ipv6": _L4V6 + _PORTS + _COMMENT,
    "sctp-ipv6": _L4V6 + _PORTS + _COMMENT,
    "icmpv6": _L4V6 + ("type", "code") + _COMMENT,
    "all-ipv6": _L4V6 + _COMMENT,
    "esp-ipv6": _L4V6 + _COMMENT,
    "ah-ipv6": _L4V6 + _COMMENT,
    "udplite-ipv6": _L4V6 + _COMMENT,
}

# Symbolic values libvirt accepts for numeric fields, so "ipv4" equals 0x0800.
_ETHER_TYPES = {"ipv4": 0x0800, "arp": 0x0806, "rarp": 0x8035, "ipv6": 0x86DD, "vlan": 0x8100}
_IP_PROTOCOLS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "esp": 50, "ah": 51, "icmpv6": 58,
                 "sctp": 132, "udplite": 136}
_SYMBOLS = {"protocolid": _ETHER_TYPES, "encap-protocol": _ETHER_TYPES, "protocol": _IP_PROTOCOLS}
_BOOLEANS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
_INT_RE = re.compile(r"^-?[0-9]+$")
_CASE_SENSITIVE = ("comment", "ipset")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_PARAM_NAME_RE = re.compile(r"^[A-Za-z0-9_]+$")
_PARAM_VALUE_RE = re.compile(r"^[A-Za-z0-9_.:]+$")


def chain_default_priority(chain: str | None) -> int:
    """The priority libvirt gives a filter whose ``priority`` is not set."""
    for prefix, prio in CHAIN_PRIORITIES:
        if chain and chain.startswith(prefix):
            return prio
    return 0


def _attr_name(key: str) -> str:
    """snake_case keys (connlimit_above) are accepted for libvirt's hyphenated names."""
    return str(key).replace("_", "-")


def _key_name(attr: str) -> str:
    return attr.replace("-", "_")


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


class _Priority:
    """A rule's priority: an integer from -1000 to 1000."""

    def norm(self, value: Any, path: str) -> int:
        if isinstance(value, (bool, float)) or not _INT_RE.match(str(value)) or not -1000 <= int(value) <= 1000:
            raise InvalidSpec(path, "%r is not an integer from -1000 to 1000" % (value,))
        return int(value)


class _StateMatch:
    def norm(self, value: Any, path: str) -> bool:
        return _statematch(value, path)


class _Value:
    """A match attribute's value (checked against nwfilter.rng with the whole filter)."""

    def norm(self, value: Any, path: str) -> Any:
        if isinstance(value, (dict, list)):
            raise InvalidSpec(path, "expected a single value, got %s" % type(value).__name__)
        if isinstance(value, str):
            xmlutil.check_text(value, path)
        return value


class _Parameters:
    def norm(self, value: Any, path: str) -> dict[str, Any]:
        _params_items(value, path)
        return value


def _hyphenated(value: Any, _path: str) -> Any:
    """snake_case keys (connlimit_above, tcp_ipv6) are accepted for libvirt's hyphenated names."""
    return {_attr_name(k): ({} if v is None and _attr_name(k) in PROTOCOLS else v) for k, v in value.items()} \
        if isinstance(value, dict) else value


def _one_protocol(rule: dict[str, Any], path: str) -> dict[str, Any]:
    for key, allowed in (("action", ACTIONS), ("direction", DIRECTIONS)):
        if key not in rule:
            raise InvalidSpec("%s.%s" % (path, key), "required: one of %s" % ", ".join(allowed))
    protocols = [k for k in rule if k in PROTOCOLS]
    if len(protocols) > 1:
        raise InvalidSpec("%s.%s" % (path, protocols[1]), "a rule matches one protocol, it already has %s" % protocols[0])
    return rule


_NAME = Str(_NAME_RE, "a valid filter name (letters, digits, '_', '-', '.'; not starting with a digit or '-')")
# One structured rule: action, direction, priority, statematch and at most one protocol with its attributes.
_RULE = Dict(dict({"action": Enum(*ACTIONS), "direction": Enum(*DIRECTIONS), "priority": _Priority(),
                   "statematch": _StateMatch()},
                  **{proto: Dict({a: _Value() for a in attrs}, pre=_hyphenated) for proto, attrs in PROTOCOLS.items()}),
             pre=_hyphenated, post=_one_protocol)
_FILTERREF = Dict({"filter": _NAME, "parameters": _Parameters()}, required=("filter",),
                  pre=lambda value, _path: {"filter": value} if isinstance(value, str) else value)


def _check_filter_name(name: Any, path: str) -> str:
    if not isinstance(name, str):
        raise InvalidSpec(path, "%r is not a valid filter name" % (name,))
    return _NAME.norm(name, path)


def _check_rule(rule: Any, path: str) -> tuple[str | None, dict[str, Any]]:
    """Validate one structured rule (the rule schema); return (protocol, attributes)."""
    if not isinstance(rule, dict):
        raise InvalidSpec(path, "a rule is a dict with action, direction and one protocol")
    out = _RULE.norm(rule, path)
    protocol = next((k for k in out if k in PROTOCOLS), None)
    return protocol, (out[protocol] if protocol else {})


def _statematch(value: Any, path: str = "statematch") -> bool:
    """A rule's statematch as a bool (None: libvirt's default, true); anything else names its path.

    libvirt's schema accepts only 'false' and '0' (any case); its parser reads every other
    string as true, so a typo would silently keep connection tracking on.
    """
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, (str, int)):
        known = _BOOLEANS.get(str(value).strip().lower())
        if known is not None:
            return known
    raise InvalidSpec(path, "%r is not a boolean; use false (or no, 0) to turn connection tracking off, "
                            "true (or yes, 1, or leave it out) for libvirt's default" % (value,))


def _statematch_text(value: Any, path: str = "statematch") -> str | None:
    """libvirt only knows statematch='false'; true is the default and left out."""
    return None if _statematch(value, path) else "false"


def _params_items(parameters: Any, path: str) -> list[tuple[str, str]]:
    """{'IP': ['10.0.0.1', '10.0.0.2']} -> repeated <parameter> pairs, checked."""
    if parameters is None:
        return []
    if not isinstance(parameters, dict):
        raise InvalidSpec(path, "parameters are a dict of name: value (or list of values)")
    items = []
    for name, value in parameters.items():
        if not _PARAM_NAME_RE.match(str(name)):
            raise InvalidSpec("%s.%s" % (path, name), "a parameter name has letters, digits and '_' only")
        values = value if isinstance(value, (list, tuple)) else [value]
        for i, v in enumerate(values):
            text = _value_text(v)
            if not _PARAM_VALUE_RE.match(text):
                sub = "%s.%s" % (path, name) + ("[%d]" % i if isinstance(value, (list, tuple)) else "")
                raise InvalidSpec(sub, "%r: a parameter value has letters, digits, '_', '.' and ':' only" % text)
            items.append((str(name), text))
    return items


def _normalise_filterrefs(filterrefs: Any, path: str = "filterrefs") -> list[dict[str, Any]]:
    """Accept 'name' or {filter, parameters}; give [{filter, parameters}]."""
    if filterrefs is None:
        return []
    if not isinstance(filterrefs, (list, tuple)):
        raise InvalidSpec(path, "a list of filter names or {filter, parameters} dicts")
    return [dict({"parameters": {}}, **ref) for ref in List(_FILTERREF).norm(list(filterrefs), path)]


def _build(name: str, rules: list, filterrefs: list, chain: str | None, priority: Any,
           uuid: str | None) -> Any:
    root = etree.Element("filter")
    root.set("name", name)
    for key, value in (("chain", chain), ("priority", priority)):
        if isinstance(value, str):
            xmlutil.check_text(value, key)
    if chain is not None:
        root.set("chain", str(chain))
    if priority is not None:
        root.set("priority", _value_text(priority))
    if uuid:
        xmlutil.sub(root, "uuid", text=uuid)
    for i, ref in enumerate(filterrefs):
        el = xmlutil.sub(root, "filterref", {"filter": ref["filter"]})
        for pname, pvalue in _params_items(ref.get("parameters"), "filterrefs[%d].parameters" % i):
            xmlutil.sub(el, "parameter", {"name": pname, "value": pvalue})
    for i, rule in enumerate(rules):
        protocol, attrs = _check_rule(rule, "rules[%d]" % i)
        el = xmlutil.sub(root, "rule", {"action": rule["action"], "direction": rule["direction"],
                                        "priority": rule.get("priority"),
                                        "statematch": _statematch_text(rule.get("statematch"))})
        if protocol is not None:
            xmlutil.sub(el, protocol, {k: _value_text(v) for k, v in attrs.items()})
    return root


def _locate_schema_error(root: Any) -> None:
    """After the whole filter failed nwfilter.rng, find the rule and attribute to name."""
    for i, rule in enumerate(root.findall("rule")):
        proto = next(iter(rule), None)
        probe = etree.Element("filter", name="probe")
        probe.append(etree.fromstring(etree.tostring(rule)))
        try:
            _validate(probe, "probe")
            continue
        except InvalidSpec:
            pass
        if proto is not None:
            for attr, value in proto.attrib.items():
                one = etree.Element("filter", name="probe")
                r = xmlutil.sub(one, "rule", {"action": "drop", "direction": "in"})
                xmlutil.sub(r, proto.tag, {attr: value})
                try:
                    xmlutil.validate(one, "nwfilter")
                except InvalidSpec:
                    raise InvalidSpec("rules[%d].%s.%s" % (i, proto.tag, _key_name(attr)),
                                      "%r is not a valid value for %s (see libvirt's nwfilter.rng)"
                                      % (value, attr))
        for attr in ("priority", "statematch"):
            if rule.get(attr) is not None:
                raise InvalidSpec("rules[%d].%s" % (i, attr), "%r is not valid for libvirt" % rule.get(attr))
    for attr in ("chain", "priority"):
        if root.get(attr) is not None:
            probe = etree.Element("filter", name="probe")
            probe.set(attr, root.get(attr))
            try:
                xmlutil.validate(probe, "nwfilter")
            except InvalidSpec:
                raise InvalidSpec(attr, "%r is not valid (chain: root or mac, stp, vlan, arp, rarp, ipv4, "
                                        "ipv6 with an optional suffix; priority: -1000..1000)" % root.get(attr))


def filter_config(name: str, rules: list | None = None, filterrefs: list | None = None,
                  chain: str | None = None, priority: int | None = None, uuid: str | None = None) -> Any:
    """Structured rules -> a validated <filter> element; bad input names its path."""
    _check_filter_name(name, "name")
    if rules is not None and not isinstance(rules, (list, tuple)):
        raise InvalidSpec("rules", "a list of rules")
    root = _build(name, list(rules or []), _normalise_filterrefs(filterrefs), chain, priority, uuid)
    try:
        _validate(root, name)
    except InvalidSpec:
        _locate_schema_error(root)
        raise
    return root


def _validate(root: Any, name: str) -> None:
    """nwfilter.rng check; stp's attributes one by one (libxml2 takes exponential time on them)."""
    stps = root.findall("rule/stp")
    if not stps:
        xmlutil.validate(root, "nwfilter", "nwfilter '%s'" % name)
        return
    bare = etree.fromstring(etree.tostring(root))
    for stp in bare.findall("rule/stp"):
        for attr in list(stp.attrib):
            del stp.attrib[attr]
    xmlutil.validate(bare, "nwfilter", "nwfilter '%s'" % name)
    for stp in stps:
        for attr, value in stp.attrib.items():
            probe = etree.Element("filter", name="probe")
            xmlutil.sub(xmlutil.sub(probe, "rule", {"action": "drop", "direction": "in"}), "stp", {attr: value})
            xmlutil.validate(probe, "nwfilter", "nwfilter '%s'" % name)


def filter_xml(name: str, rules: list | None = None, filterrefs: list | None = None,
               chain: str | None = None, priority: int | None = None, uuid: str | None = None) -> str:
    """filter_config serialised as libvirt prints it."""
    return xmlutil.to_string(filter_config(name, rules, filterrefs, chain, priority, uuid))


def parse_filter(xml: str | Any) -> dict[str, Any]:
    """nwfilter XML -> the structured form filter_config takes (plus uuid)."""
    root = xmlutil.parse(xml, "xml") if isinstance(xml, (str, bytes)) else xml
    if root.tag != "filter":
        raise InvalidSpec("xml", "the root element of an nwfilter is <filter>, not <%s>" % root.tag)
    prio = root.get("priority")
    spec: dict[str, Any] = {
        "name": root.get("name"),
        "uuid": root.findtext("uuid"),
        "chain": root.get("chain"),
        "priority": int(prio) if prio is not None and prio.lstrip("-").isdigit() else prio,
        "filterrefs": [],
        "rules": [],
    }
    for child in root:
        if child.tag == "filterref":
            params: dict[str, Any] = {}
            for p in child.findall("parameter"):
                key, value = p.get("name"), p.get("value")
                if key in params:
                    params[key] = (params[key] if isinstance(params[key], list) else [params[key]]) + [value]
                else:
                    params[key] = value
            spec["filterrefs"].append({"filter": child.get("filter"), "parameters": params})
        elif child.tag == "rule":
            rule: dict[str, Any] = {"action": child.get("action"), "direction": child.get("direction")}
            if child.get("priority") is not None:
                rule["priority"] = int(child.get("priority"))
            if child.get("statematch") is not None:
                rule["statematch"] = _BOOLEANS.get(child.get("statematch").strip().lower(), True)
            proto = next((c for c in child if isinstance(c.tag, str)), None)
            if proto is not None:
                rule[proto.tag] = {_key_name(k): v for k, v in proto.attrib.items()}
            spec["rules"].append(rule)
    return spec


# A variable's first value: libvirt stores $B[@0] as $B.
_FIRST_OF_VAR_RE = re.compile(r"\[@0\]$")


def _norm_value(attr: str, value: Any) -> Any:
    """One attribute value in the form libvirt stores it: case, whitespace, hex/decimal, symbols, MACs in
    full (``1:2:3:4:5:6`` is ``01:02:03:04:05:06``), a netmask as its prefix (``255.255.255.255`` is 32)."""
    if isinstance(value, bool):
        value = "yes" if value else "no"
    text = str(value).strip()
    if text.startswith("$"):
        return _FIRST_OF_VAR_RE.sub("", re.sub(r"\s+", "", text))
    if attr in _CASE_SENSITIVE:
        return text
    low = text.lower()
    if attr in _SYMBOLS and low in _SYMBOLS[attr]:
        return _SYMBOLS[attr][low]
    if attr in ("match", "gratuitous") and low in _BOOLEANS:
        return _BOOLEANS[low]
    if attr.endswith("ipmask") and model.mask_prefix(low) is not None:
        return model.mask_prefix(low)
    if model.mac(low) is not None:
        return model.mac(low)
    try:  # libvirt reads nwfilter numbers as decimal, else as hex (0x optional)
        return int(low, 16) if low.startswith("0x") else int(low)
    except ValueError:
        return low


def canonical_filter(spec: dict[str, Any]) -> dict[str, Any]:
    """A structured filter with libvirt's defaults filled in, for semantic comparison (no uuid)."""
    chain = spec.get("chain") or "root"
    prio = spec.get("priority")
    refs = []
    for ref in _normalise_filterrefs(spec.get("filterrefs")):
        params = sorted((k, _value_text(v)) for k, v in _params_items(ref.get("parameters"), "parameters"))
        refs.append((ref["filter"], tuple(params)))
    rules = []
    for i, rule in enumerate(spec.get("rules") or []):
        protocol, attrs = _check_rule(rule, "rules[%d]" % i)
        rules.append((
            rule["action"], rule["direction"],
            int(rule["priority"]) if rule.get("priority") is not None else DEFAULT_RULE_PRIORITY,
            _statematch_text(rule.get("statematch")) is None,
            protocol,
            # match='yes' is libvirt's default, which it does not store (its shipped no-arp-ip-spoofing says it)
            tuple(sorted((k, n) for k, n in ((k, _norm_value(k, v)) for k, v in attrs.items())
                         if not (k == "match" and n is True))),
        ))
    return {
        "name": spec.get("name"),
        "chain": chain,
        "priority": int(prio) if prio is not None else chain_default_priority(chain),
        "filterrefs": refs,
        "rules": rules,
    }


def filter_differences(desired: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """What differs between two structured filters, as ``{path, before, after}`` records of their canonical
    forms (libvirt's defaults filled in, values as libvirt stores them, uuid ignored)."""
    want, have = canonical_filter(desired), canonical_filter(current)
    out = [difference(key, have[key], want[key]) for key in ("chain", "priority", "filterrefs") if want[key] != have[key]]
    for i in range(max(len(want["rules"]), len(have["rules"]))):
        w = want["rules"][i] if i < len(want["rules"]) else None
        h = have["rules"][i] if i < len(have["rules"]) else None
        if w is not None and h is not None and w[:5] == h[:5]:  # the same rule head: name the attributes
            wa, ha = dict(w[5]), dict(h[5])
            out.extend(difference("rules[%d].%s.%s" % (i, w[4], _key_name(k)), ha.get(k), wa.get(k))
                       for k in sorted(set(wa) | set(ha)) if wa.get(k) != ha.get(k))
        elif w != h:
            out.append(difference("rules[%d]" % i, h, w))
    return out


def filters_equal(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Two structured filters mean the same to libvirt (uuid ignored)."""
    return not filter_differences(a, b)


def _shown(value: Any) -> str:
    return "nothing" if value is None else str(value)


def _refs_of(xml: str) -> list[str]:
    return [r.get("filter") for r in xmlutil.parse(xml).findall("filterref")]


class NWFilterFirewall:
    """libvirt network filters through one Host: build, define, undefine, who uses what."""

    def __init__(self, host: Any, prefix: str = "hvl-instance", check_mode: bool = False) -> None:
        self._host = host
        self.prefix = prefix
        self.plan = Plan(host, check_mode)  # every change is recorded; run only when not in check mode
        self.warnings: list[str] = []  # set by define_filter for the caller to pass on
        self.differences: list[dict[str, Any]] = []  # set by define_filter: what the existing filter differed in

    @property
    def host(self) -> Any:
        return self._host

    # ------------------------------------------------------------------ building (no connection)
    filter_config = staticmethod(filter_config)
    filter_xml = staticmethod(filter_xml)
    parse_filter = staticmethod(parse_filter)

    # ------------------------------------------------------------------ reading
    def _lookup(self, name: str) -> Any | None:
        try:
            return self._host.call("looking up nwfilter '%s'" % name, lambda c: c.nwfilterLookupByName(name))
        except NotFound:
            return None

    def filter_exists(self, name: str) -> bool:
        return self._lookup(name) is not None

    def get_filter_xml(self, name: str) -> str | None:
        """The filter's XML as libvirt holds it, or None if there is no such filter."""
        nwf = self._lookup(name)
        if nwf is None:
            return None
        return self._host.call("reading nwfilter '%s'" % name, lambda _c: nwf.XMLDesc(0))

    def _read_listed(self, what: str, obj: Any, flags: int = 0) -> str | None:
        """XML of an object from a listing, or None when it vanished since (others share the daemon)."""
        try:
            return self._host.call(what, lambda _c: obj.XMLDesc(flags))
        except NotFound:
            return None

    def list_filters(self) -> dict[str, str]:
        """Every filter's XML by name, from one listing."""
        filters = self._host.call("listing nwfilters", lambda c: c.listAllNWFilters(0))
        found = {f.name(): self._read_listed("reading nwfilter '%s'" % f.name(), f) for f in filters}
        return {name: xml for name, xml in found.items() if xml is not None}

    def missing_filterrefs(self, filterrefs: list | None) -> list[str]:
        """Referenced filters that do not exist (checked before anything is defined)."""
        return [ref["filter"] for ref in _normalise_filterrefs(filterrefs) if not self.filter_exists(ref["filter"])]

    # ------------------------------------------------------------------ define / undefine
    def _define(self, xml: str) -> None:
        """The one mutating call of define_filter (through the plan: nothing in check mode)."""
        flags = getattr(libvirt, "VIR_NWFILTER_DEFINE_VALIDATE", 0)
        if any(len(stp.attrib) > _STP_VALIDATE_MAX for stp in xmlutil.parse(xml).iter("stp")):
            # libvirt's RelaxNG check of many stp attributes takes minutes and holds the
            # nwfilter driver's lock meanwhile; filter_config already checked them one by one.
            flags = 0

        def define(conn: Any) -> Any:
            if hasattr(conn, "nwfilterDefineXMLFlags"):
                return conn.nwfilterDefineXMLFlags(xml, flags)
            return conn.nwfilterDefineXML(xml)  # pragma: no cover - libvirt < 7.7
        self.plan.act("define", lambda: self._host.call("defining nwfilter", define))

    def define_filter(self, name: str, rules: list | None = None, filterrefs: list | None = None,
                      chain: str | None = None, priority: int | None = None, xml: str | None = None,
                      check_refs: bool = True) -> tuple[bool, str | None, str]:
        """Make the filter exist as described; returns (changed, before_xml, after_xml).

        ``xml`` replaces the structured arguments. An existing filter keeps its
        UUID and is only redefined when it differs semantically. Filters named
        in filterrefs must exist (``check_refs``), checked before any change.
        """
        if xml is not None:
            el = xmlutil.parse(xml, "xml")
            xmlutil.validate(el, "nwfilter", "xml")
            spec = parse_filter(el)
            if name and spec["name"] != name:
                raise InvalidSpec("xml", "the XML defines filter '%s', not '%s'" % (spec["name"], name))
            name = spec["name"]
            rules, filterrefs, chain, priority = spec["rules"], spec["filterrefs"], spec["chain"], spec["priority"]
        desired = {"name": name, "rules": rules or [], "filterrefs": filterrefs or [],
                   "chain": chain, "priority": priority}
        element = filter_config(name, rules, filterrefs, chain, priority)  # validates, names bad paths
        if check_refs:
            missing = [f for f in self.missing_filterrefs(filterrefs) if f != name]
            if missing:
                raise InvalidSpec("filterrefs", "filter(s) %s do not exist on %s; define them first"
                                  % (", ".join("'%s'" % m for m in missing), self._host.uri))
        before = self.get_filter_xml(name)
        self.warnings, self.differences = [], []
        if before is not None:
            current = parse_filter(before)
            self.differences = filter_differences(desired, current)
            if not self.differences:
                return False, before, before
            # An omitted chain is the documented default, root, like every omitted option (libvirt moves
            # a filter to another chain in place, also while guests use it, as long as the UUID is kept).
            # libvirt prints chain and its default priority, so say them to make the diff show only real changes.
            chain = chain if chain is not None else "root"
            if priority is None and current["priority"] == chain_default_priority(chain) \
                    and current["priority"] != 0:
                priority = current["priority"]
            element = filter_config(name, rules, filterrefs, chain, priority, uuid=current["uuid"])
        after = xmlutil.to_string(element)
        self._define(after)
        if not self.plan.check_mode:
            after = self.get_filter_xml(name) or after
            unlike = filter_differences(desired, parse_filter(after))
            if unlike:
                self.warnings.append(
                    "libvirt stored nwfilter '%s' differently from the request, so the next run will redefine it: %s"
                    % (name, "; ".join("%s: requested %s, stored %s" % (d["path"], _shown(d["after"]), _shown(d["before"]))
                                       for d in unlike)))
        return True, before, after

    def filter_users(self, name: str, filters: dict[str, str] | None = None) -> list[dict[str, str]]:
        """Who uses filter ``name``: other filters' filterrefs, running guests' bindings, defined guests.

        A binding or guest counts when it references the filter directly or
        through a chain of filterrefs. Each user is {kind, name, detail}.
        """
        filters = self.list_filters() if filters is None else filters
        refs = {fname: _refs_of(fxml) for fname, fxml in filters.items()}
        # every filter whose evaluation reaches `name`
        reaching = {name}
        grew = True
        while grew:
            grew = False
            for fname, targets in refs.items():
                if fname not in reaching and reaching.intersection(targets):
                    reaching.add(fname)
                    grew = True
        users: list[dict[str, str]] = []
        for fname, targets in sorted(refs.items()):
            if fname != name and name in targets:
                users.append({"kind": "filter", "name": fname, "detail": "filter '%s'" % fname})
        running: set[str] = set()
        for binding in self._host.call("listing nwfilter bindings", lambda c: c.listAllNWFilterBindings(0)):
            btext = self._read_listed("reading an nwfilter binding", binding)
            if btext is None:  # its guest stopped meanwhile
                continue
            bxml = xmlutil.parse(btext)
            bfilter = bxml.find("filterref").get("filter") if bxml.find("filterref") is not None else None
            if bfilter in reaching:
                owner = bxml.findtext("owner/name") or "?"
                running.add(owner)
                via = "" if bfilter == name else " via filter '%s'" % bfilter
                users.append({"kind": "binding", "name": owner,
                              "detail": "running domain '%s' interface %s%s"
                                        % (owner, bxml.findtext("portdev") or binding.portDev(), via)})
        flags = libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT
        for dom in self._host.call("listing domains", lambda c: c.listAllDomains(flags)):
            dname = dom.name()
            if dname in running:
                continue
            dtext = self._read_listed("reading domain '%s'" % dname, dom, libvirt.VIR_DOMAIN_XML_INACTIVE)
            if dtext is None:  # undefined meanwhile
                continue
            dxml = xmlutil.parse(dtext)
            hits = [f.get("filter") for f in dxml.findall("devices/interface/filterref") if f.get("filter") in reaching]
            if hits:
                via = "" if name in hits else " via filter '%s'" % hits[0]
                users.append({"kind": "domain", "name": dname,
                              "detail": "defined domain '%s' (an interface's filterref%s)" % (dname, via)})
        return users

    def filter_in_use(self, name: str) -> list[str]:
        """Readable descriptions of everything that uses the filter (empty: free to remove)."""
        return [u["detail"] for u in self.filter_users(name)]

    def undefine_filter(self, name: str, force: bool = False) -> tuple[bool, str | None]:
        """Remove the filter unless something uses it; returns (changed, before_xml).

        ``force`` removes it although other filters or defined domains refer
        to it; libvirt itself still refuses while a running guest's binding uses it.
        """
        nwf = self._lookup(name)
        if nwf is None:
            return False, None
        before = self._host.call("reading nwfilter '%s'" % name, lambda _c: nwf.XMLDesc(0))
        users = self.filter_users(name)
        if users and not force:
            raise OperationFailed("nwfilter '%s' on %s is in use by %s; remove those references first or set force"
                                  % (name, self._host.uri, "; ".join(u["detail"] for u in users)), uri=self._host.uri)
        try:
            self.plan.act("undefine", lambda: self._host.call("removing nwfilter '%s'" % name, lambda _c: nwf.undefine()))
        except OperationFailed as exc:
            if users:
                raise OperationFailed("%s (libvirt refuses to remove a filter running guests use, even with force)"
                                      % exc.msg, uri=exc.uri, code=exc.code)
            raise
        return True, before

    # ------------------------------------------------------------------ nova's per-guest filters
    def instance_filter_name(self, guest_name: str, mac: str | None = None) -> str:
        """The per-guest (per-interface when ``mac`` is given) filter name, a valid NCName."""
        base = re.sub(r"[^A-Za-z0-9_.\-]", "_", guest_name)
        name = "%s-%s" % (self.prefix, base)
        if mac:
            name += "-" + mac.replace(":", "").lower()
        return name

    def instance_filter_spec(self, guest_name: str, mac: str | None = None, ip: Any = None,
                             allow_dhcp: bool = True, dhcp_server: str | None = None,
                             rules: list | None = None, filterrefs: list | None = None) -> dict[str, Any]:
        """The base filter nova's firewall gave each guest, as a structured spec.

        clean-traffic (no MAC/IP/ARP spoofing; ``ip``: the addresses the guest
        may use, one or a list, learned when omitted), DHCP allowed (from any
        server, or only ``dhcp_server``), then extra filterrefs and the guest's own rules.
        """
        refs: list[dict[str, Any]] = []
        ips = [ip] if isinstance(ip, str) else list(ip or [])
        refs.append({"filter": "clean-traffic", "parameters": {"IP": ips} if ips else {}})
        if allow_dhcp:
            if dhcp_server:
                refs.append({"filter": "allow-dhcp-server", "parameters": {"DHCPSERVER": dhcp_server}})
            else:
                refs.append({"filter": "allow-dhcp", "parameters": {}})
        refs.extend(_normalise_filterrefs(filterrefs))
        return {"name": self.instance_filter_name(guest_name, mac), "chain": "root",
                "filterrefs": refs, "rules": list(rules or [])}

    def setup_basic_filtering(self, guest_name: str, mac: str | None = None, ip: Any = None,
                              allow_dhcp: bool = True, dhcp_server: str | None = None,
                              rules: list | None = None, filterrefs: list | None = None) -> dict[str, Any]:
        """Define the guest's base filter; returns {name, changed, before, after}.

        Point the guest's interface at it with ``<filterref filter='{name}'/>``.
        """
        spec = self.instance_filter_spec(guest_name, mac, ip, allow_dhcp, dhcp_server, rules, filterrefs)
        changed, before, after = self.define_filter(spec["name"], spec["rules"], spec["filterrefs"],
                                                    spec["chain"])
        return {"name": spec["name"], "changed": changed, "before": before, "after": after}

    def unfilter_instance(self, guest_name: str, mac: str | None = None, force: bool = False) -> dict[str, Any]:
        """Remove the guest's base filter (after the guest stopped using it)."""
        name = self.instance_filter_name(guest_name, mac)
        changed, before = self.undefine_filter(name, force=force)
        return {"name": name, "changed": changed, "before": before, "after": None}
