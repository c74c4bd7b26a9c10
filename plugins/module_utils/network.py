# Copyright (c) hypervisor.libvirt contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""libvirt virtual networks: spec -> XML, XML -> spec, and converging a network to a spec.

Changes reach existing networks (community.libvirt's virt_net leaves them
alone): DHCP hosts and ranges through ``virNetworkUpdate`` on the live and
persistent config at once, everything else by redefining the persistent
config and reporting (or doing, when asked) the restart it needs. No Ansible
imports; every libvirt call goes through ``Host.call``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    InvalidSpec,
    NotFound,
    OperationFailed,
)

FORWARD_MODES = ("none", "isolated", "nat", "route", "bridge", "open")
STATES = ("present", "active", "inactive", "absent")
SPEC_KEYS = ("name", "forward", "bridge", "mtu", "mac", "domain", "dns", "ips", "ip")


# ---------------------------------------------------------------------- spec checking
def _dict(value: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidSpec(path, "expected a dict with %s" % ", ".join(allowed))
    for key in value:
        if key not in allowed:
            raise InvalidSpec("%s.%s" % (path, key), "unknown key; allowed: %s" % ", ".join(allowed))
    return value


def _addr(value: Any, path: str, family: int | None = None) -> str:
    try:
        ip = ipaddress.ip_address(str(value))
    except ValueError:
        raise InvalidSpec(path, "%r is not an IP address" % (value,))
    if family and ip.version != family:
        raise InvalidSpec(path, "%s is not an IPv%d address" % (value, family))
    return str(ip)


def _mac(value: Any, path: str) -> str:
    text = str(value).lower()
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise InvalidSpec(path, "%r is not a MAC address (aa:bb:cc:dd:ee:ff)" % (value,))
    return text


def _bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("yes", "on", "true", "1"):
        return True
    if text in ("no", "off", "false", "0"):
        return False
    raise InvalidSpec(path, "%r is not a boolean" % (value,))


def _int(value: Any, path: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidSpec(path, "%r is not an integer" % (value,))
    if isinstance(value, bool) or not low <= number <= high:
        raise InvalidSpec(path, "%r is not within %d..%d" % (value, low, high))
    return number


def _check_ip(ip: Any, path: str) -> dict[str, Any]:
    """One ``ips`` entry, normalised: family, address, prefix, dhcp ranges and hosts."""
    ip = _dict(ip, path, ("address", "prefix", "netmask", "family", "dhcp"))
    if "address" not in ip:
        raise InvalidSpec("%s.address" % path, "required")
    family_name = ip.get("family")
    if family_name not in (None, "ipv4", "ipv6"):
        raise InvalidSpec("%s.family" % path, "%r is not ipv4 or ipv6" % family_name)
    address = _addr(ip["address"], "%s.address" % path, {"ipv4": 4, "ipv6": 6}.get(family_name or ""))
    version = ipaddress.ip_address(address).version
    if ip.get("prefix") is not None and ip.get("netmask") is not None:
        raise InvalidSpec(path, "give prefix or netmask, not both")
    if ip.get("netmask") is not None:
        if version != 4:
            raise InvalidSpec("%s.netmask" % path, "netmask is for IPv4; use prefix")
        try:
            prefix = ipaddress.ip_network("0.0.0.0/%s" % ip["netmask"]).prefixlen
        except ValueError:
            raise InvalidSpec("%s.netmask" % path, "%r is not a netmask" % ip["netmask"])
    elif ip.get("prefix") is not None:
        prefix = _int(ip["prefix"], "%s.prefix" % path, 0, 32 if version == 4 else 128)
    else:
        prefix = 24 if version == 4 else 64
    net = ipaddress.ip_network("%s/%d" % (address, prefix), strict=False)
    dhcp = _dict(ip.get("dhcp"), "%s.dhcp" % path, ("ranges", "hosts"))
    ranges, hosts = [], []
    for i, rng in enumerate(dhcp.get("ranges") or []):
        p = "%s.dhcp.ranges[%d]" % (path, i)
        rng = _dict(rng, p, ("start", "end"))
        start, end = (_addr(rng.get(k), "%s.%s" % (p, k), version) for k in ("start", "end"))
        for k, v in (("start", start), ("end", end)):
            if ipaddress.ip_address(v) not in net:
                raise InvalidSpec("%s.%s" % (p, k), "%s is outside %s" % (v, net))
        if ipaddress.ip_address(start) > ipaddress.ip_address(end):
            raise InvalidSpec(p, "start %s is after end %s" % (start, end))
        ranges.append({"start": start, "end": end})
    for i, host in enumerate(dhcp.get("hosts") or []):
        p = "%s.dhcp.hosts[%d]" % (path, i)
        host = _dict(host, p, ("mac", "name", "ip"))
        if not host.get("mac") and not host.get("name"):
            raise InvalidSpec(p, "a DHCP host needs mac or name")
        entry = {"mac": _mac(host["mac"], "%s.mac" % p) if host.get("mac") else None,
                 "name": str(host["name"]) if host.get("name") else None,
                 "ip": _addr(host["ip"], "%s.ip" % p, version) if host.get("ip") else None}
        if entry["ip"] and ipaddress.ip_address(entry["ip"]) not in net:
            raise InvalidSpec("%s.ip" % p, "%s is outside %s" % (entry["ip"], net))
        hosts.append(entry)
    keys = [h["mac"] or h["name"] for h in hosts]
    dup = next((k for k in keys if keys.count(k) > 1), None)
    if dup:
        raise InvalidSpec("%s.dhcp.hosts" % path, "%s is listed twice" % dup)
    return {"family": "ipv%d" % version, "address": address, "prefix": prefix,
            "dhcp": {"ranges": ranges, "hosts": hosts} if (ranges or hosts or ip.get("dhcp") is not None) else None}


def check_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """A user's network spec, validated and normalised; errors name the path."""
    spec = _dict(spec, "", SPEC_KEYS)
    name = spec.get("name")
    if not name or not isinstance(name, str) or "/" in name:
        raise InvalidSpec("name", "a network name is required (no '/')")
    forward = spec.get("forward")
    if forward is None or isinstance(forward, str):
        forward = {"mode": forward or "none"}
    forward = dict(_dict(forward, "forward", ("mode", "dev", "nat")))
    mode = forward.get("mode") or "none"
    if mode not in FORWARD_MODES:
        raise InvalidSpec("forward.mode", "%r is not one of %s" % (mode, ", ".join(FORWARD_MODES)))
    mode = "none" if mode == "isolated" else mode
    nat = _dict(forward.get("nat"), "forward.nat", ("addresses", "ports"))
    if nat and mode != "nat":
        raise InvalidSpec("forward.nat", "only with mode nat")
    out_nat = {}
    if nat.get("addresses"):
        a = _dict(nat["addresses"], "forward.nat.addresses", ("start", "end"))
        out_nat["addresses"] = {k: _addr(a.get(k), "forward.nat.addresses.%s" % k, 4) for k in ("start", "end")}
    if nat.get("ports"):
        p = _dict(nat["ports"], "forward.nat.ports", ("start", "end"))
        out_nat["ports"] = {k: _int(p.get(k), "forward.nat.ports.%s" % k, 1, 65535) for k in ("start", "end")}
    bridge = spec.get("bridge")
    if isinstance(bridge, str):
        bridge = {"name": bridge}
    bridge = dict(_dict(bridge, "bridge", ("name", "stp", "delay")))
    if bridge.get("name") is not None and (len(str(bridge["name"])) > 15 or "/" in str(bridge["name"])):
        raise InvalidSpec("bridge.name", "%r: a Linux interface name has at most 15 characters" % bridge["name"])
    if mode == "bridge" and not bridge.get("name") and not forward.get("dev"):
        raise InvalidSpec("bridge.name", "forward mode bridge needs the name of an existing host bridge")
    if bridge.get("stp") is not None:
        bridge["stp"] = _bool(bridge["stp"], "bridge.stp")
    if bridge.get("delay") is not None:
        bridge["delay"] = _int(bridge["delay"], "bridge.delay", 0, 3600)
    if spec.get("ip") is not None and spec.get("ips") is not None:
        raise InvalidSpec("ip", "give ip or ips, not both")
    raw_ips = [spec["ip"]] if spec.get("ip") is not None else (spec.get("ips") or [])
    if not isinstance(raw_ips, list):
        raise InvalidSpec("ips", "a list of {address, prefix|netmask, dhcp}")
    ips = [_check_ip(ip, "ips[%d]" % i if spec.get("ips") is not None else "ip") for i, ip in enumerate(raw_ips)]
    if mode == "bridge" and ips:
        raise InvalidSpec("ips", "a network with forward mode bridge has no IP of its own")
    domain = spec.get("domain")
    if isinstance(domain, str):
        domain = {"name": domain}
    domain = dict(_dict(domain, "domain", ("name", "local_only")))
    if domain and not domain.get("name"):
        raise InvalidSpec("domain.name", "required")
    if domain.get("local_only") is not None:
        domain["local_only"] = _bool(domain["local_only"], "domain.local_only")
    dns = dict(_dict(spec.get("dns"), "dns", ("enable", "forwarders", "hosts")))
    if dns.get("enable") is not None:
        dns["enable"] = _bool(dns["enable"], "dns.enable")
    dns["forwarders"] = [_addr(f, "dns.forwarders[%d]" % i) for i, f in enumerate(dns.get("forwarders") or [])]
    dns_hosts = []
    for i, h in enumerate(dns.get("hosts") or []):
        h = _dict(h, "dns.hosts[%d]" % i, ("ip", "hostnames"))
        names = h.get("hostnames") or []
        if isinstance(names, str):
            names = [names]
        if not names:
            raise InvalidSpec("dns.hosts[%d].hostnames" % i, "at least one hostname")
        dns_hosts.append({"ip": _addr(h.get("ip"), "dns.hosts[%d].ip" % i), "hostnames": [str(n) for n in names]})
    dns["hosts"] = dns_hosts
    mtu = _int(spec["mtu"], "mtu", 68, 65535) if spec.get("mtu") is not None else None
    return {
        "name": name,
        "forward": {"mode": mode, "dev": forward.get("dev"), "nat": out_nat},
        "bridge": bridge,
        "mtu": mtu,
        "mac": _mac(spec["mac"], "mac") if spec.get("mac") else None,
        "domain": domain,
        "dns": dns,
        "ips": ips,
    }


# ---------------------------------------------------------------------- XML
def network_config(spec: dict[str, Any], uuid: str | None = None, mac: str | None = None,
                   bridge_name: str | None = None) -> Any:
    """A checked spec -> a <network> element valid against network.rng.

    ``uuid``, ``mac`` and ``bridge_name`` carry over what libvirt generated
    for an existing network, so redefining it keeps them.
    """
    s = spec
    root = etree.Element("network")
    xmlutil.sub(root, "name", text=s["name"])
    if uuid:
        xmlutil.sub(root, "uuid", text=uuid)
    fwd = s["forward"]
    if fwd["mode"] != "none":
        f = xmlutil.sub(root, "forward", {"mode": fwd["mode"], "dev": fwd.get("dev")})
        if fwd.get("nat"):
            n = xmlutil.sub(f, "nat")
            if fwd["nat"].get("addresses"):
                xmlutil.sub(n, "address", fwd["nat"]["addresses"])
            if fwd["nat"].get("ports"):
                xmlutil.sub(n, "port", fwd["nat"]["ports"])
    br = s["bridge"]
    name = br.get("name") or bridge_name
    if fwd["mode"] == "bridge":
        if name:
            xmlutil.sub(root, "bridge", {"name": name})
    elif name or br.get("stp") is not None or br.get("delay") is not None:
        xmlutil.sub(root, "bridge", {"name": name,
                                     "stp": None if br.get("stp") is None else ("on" if br["stp"] else "off"),
                                     "delay": br.get("delay")})
    if s.get("mtu"):
        xmlutil.sub(root, "mtu", {"size": s["mtu"]})
    if (s.get("mac") or mac) and fwd["mode"] != "bridge":
        xmlutil.sub(root, "mac", {"address": s.get("mac") or mac})
    if s["domain"]:
        xmlutil.sub(root, "domain", {"name": s["domain"]["name"], "localOnly": s["domain"].get("local_only")})
    dns = s["dns"]
    if dns.get("enable") is not None or dns.get("forwarders") or dns.get("hosts"):
        d = xmlutil.sub(root, "dns", {"enable": dns.get("enable")})
        for fwdr in dns.get("forwarders") or []:
            xmlutil.sub(d, "forwarder", {"addr": fwdr})
        for h in dns.get("hosts") or []:
            he = xmlutil.sub(d, "host", {"ip": h["ip"]})
            for hn in h["hostnames"]:
                xmlutil.sub(he, "hostname", text=hn)
    for ip in s["ips"]:
        attrs = {"family": ip["family"] if ip["family"] == "ipv6" else None, "address": ip["address"],
                 "prefix": ip["prefix"]}
        ie = xmlutil.sub(root, "ip", attrs)
        if ip.get("dhcp") is not None:
            de = xmlutil.sub(ie, "dhcp")
            for r in ip["dhcp"]["ranges"]:
                xmlutil.sub(de, "range", r)
            for h in ip["dhcp"]["hosts"]:
                xmlutil.sub(de, "host", _host_attrs(h))
    xmlutil.validate(root, "network", "network '%s'" % s["name"])
    return root


def _host_attrs(h: dict[str, Any]) -> dict[str, Any]:
    return {"mac": h.get("mac"), "name": h.get("name"), "ip": h.get("ip")}


def host_xml(h: dict[str, Any]) -> str:
    """One <host> of a <dhcp> section, as virNetworkUpdate takes it."""
    el = etree.Element("host")
    for k, v in _host_attrs(h).items():
        if v is not None:
            el.set(k, v)
    return etree.tostring(el, encoding="unicode")


def range_xml(r: dict[str, Any]) -> str:
    el = etree.Element("range", start=r["start"], end=r["end"])
    return etree.tostring(el, encoding="unicode")


def parse_network(xml: str | Any) -> dict[str, Any]:
    """libvirt network XML -> {spec (checked form), uuid, mac, bridge_name}."""
    root = xmlutil.parse(xml, "xml") if isinstance(xml, (str, bytes)) else xml
    if root.tag != "network":
        raise InvalidSpec("xml", "the root element of a network is <network>, not <%s>" % root.tag)
    spec: dict[str, Any] = {"name": root.findtext("name")}
    f = root.find("forward")
    if f is not None:
        fwd: dict[str, Any] = {"mode": f.get("mode", "nat")}
        if f.get("dev"):
            fwd["dev"] = f.get("dev")
        nat = f.find("nat")
        if nat is not None:
            n: dict[str, Any] = {}
            if nat.find("address") is not None:
                n["addresses"] = dict(nat.find("address").attrib)
            if nat.find("port") is not None:
                n["ports"] = {k: int(v) for k, v in nat.find("port").attrib.items()}
            if n:
                fwd["nat"] = n
        spec["forward"] = fwd
    b = root.find("bridge")
    if b is not None:
        br: dict[str, Any] = {}
        if b.get("name"):
            br["name"] = b.get("name")
        if b.get("stp"):
            br["stp"] = b.get("stp") == "on"
        if b.get("delay"):
            br["delay"] = int(b.get("delay"))
        spec["bridge"] = br
    if root.find("mtu") is not None:
        spec["mtu"] = int(root.find("mtu").get("size"))
    if root.find("mac") is not None:
        spec["mac"] = root.find("mac").get("address")
    d = root.find("domain")
    if d is not None:
        spec["domain"] = {"name": d.get("name")}
        if d.get("localOnly"):
            spec["domain"]["local_only"] = d.get("localOnly") == "yes"
    dns = root.find("dns")
    if dns is not None:
        ds: dict[str, Any] = {}
        if dns.get("enable"):
            ds["enable"] = dns.get("enable") == "yes"
        ds["forwarders"] = [fw.get("addr") for fw in dns.findall("forwarder") if fw.get("addr")]
        ds["hosts"] = [{"ip": h.get("ip"), "hostnames": [n.text for n in h.findall("hostname")]}
                       for h in dns.findall("host")]
        spec["dns"] = ds
    ips = []
    for ip in root.findall("ip"):
        e: dict[str, Any] = {"address": ip.get("address")}
        if ip.get("family"):
            e["family"] = ip.get("family")
        if ip.get("prefix"):
            e["prefix"] = int(ip.get("prefix"))
        if ip.get("netmask"):
            e["netmask"] = ip.get("netmask")
        dhcp = ip.find("dhcp")
        if dhcp is not None:
            e["dhcp"] = {"ranges": [{"start": r.get("start"), "end": r.get("end")} for r in dhcp.findall("range")],
                         "hosts": [{k: v for k, v in h.attrib.items() if k in ("mac", "name", "ip")}
                                   for h in dhcp.findall("host")]}
        ips.append(e)
    if ips:
        spec["ips"] = ips
    return {"spec": spec, "uuid": root.findtext("uuid"),
            "mac": spec.get("mac"), "bridge_name": (spec.get("bridge") or {}).get("name")}


# ---------------------------------------------------------------------- comparison
def _ip_key(ip: dict[str, Any]) -> tuple:
    return (ip["family"], ip["address"], ip["prefix"])


def _host_key(h: dict[str, Any]) -> str:
    return h.get("mac") or "name:%s" % h.get("name")


def differences(desired: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Which fields differ, declared per field: libvirt's own additions are never a difference.

    uuid, mac, bridge name/stp/delay and NAT details only count when the user
    gave them; everything else (forward mode, IPs, DHCP, DNS, domain, MTU)
    must match. ``desired`` and ``current`` are check_spec() results.
    """
    diffs = []
    df, cf = desired["forward"], current["forward"]
    if df["mode"] != cf["mode"]:
        diffs.append("forward.mode")
    if df.get("dev") and df["dev"] != cf.get("dev"):
        diffs.append("forward.dev")
    for key in ("addresses", "ports"):
        if df["nat"].get(key) and df["nat"][key] != cf["nat"].get(key):
            diffs.append("forward.nat.%s" % key)
    for key in ("name", "stp", "delay"):
        if desired["bridge"].get(key) is not None and desired["bridge"][key] != current["bridge"].get(key):
            diffs.append("bridge.%s" % key)
    if desired["mac"] and desired["mac"] != current["mac"]:
        diffs.append("mac")
    if desired["mtu"] != current["mtu"] and desired["mtu"] is not None:
        diffs.append("mtu")
    if desired["domain"] != current["domain"]:
        diffs.append("domain")
    dd, cd = desired["dns"], current["dns"]
    if (dd.get("enable") is not None and dd.get("enable") != cd.get("enable")) or \
            dd.get("forwarders") != cd.get("forwarders") or \
            sorted(map(str, dd.get("hosts") or [])) != sorted(map(str, cd.get("hosts") or [])):
        diffs.append("dns")
    dips = {_ip_key(i): i for i in desired["ips"]}
    cips = {_ip_key(i): i for i in current["ips"]}
    if set(dips) != set(cips):
        diffs.append("ips")
    else:
        for key, dip in dips.items():
            cip = cips[key]
            if (dip["dhcp"] is None) != (cip["dhcp"] is None):
                diffs.append("ips[%s].dhcp" % dip["address"])
            elif dip["dhcp"] is not None:
                if sorted(map(str, dip["dhcp"]["ranges"])) != sorted(map(str, cip["dhcp"]["ranges"])):
                    diffs.append("ips[%s].dhcp.ranges" % dip["address"])
                dh = {_host_key(h): h for h in dip["dhcp"]["hosts"]}
                ch = {_host_key(h): h for h in cip["dhcp"]["hosts"]}
                if dh != ch:
                    diffs.append("ips[%s].dhcp.hosts" % dip["address"])
    return diffs


def _current_spec(xml: str) -> dict[str, Any]:
    """libvirt's XML in check_spec() form (libvirt's XML is trusted, so it always checks)."""
    return check_spec(parse_network(xml)["spec"])


# ---------------------------------------------------------------------- converging
class NetworkManager:
    """Networks on one Host: read, list users, and converge to a spec (check mode honoured)."""

    def __init__(self, host: Any, check_mode: bool = False) -> None:
        self._host = host
        self.check_mode = check_mode
        self.actions: list[str] = []

    # -- reading
    def _lookup(self, name: str) -> Any | None:
        try:
            return self._host.call("looking up network '%s'" % name, lambda c: c.networkLookupByName(name))
        except NotFound:
            return None

    def _xml(self, net: Any, inactive: bool) -> str:
        def read(_c: Any) -> str:
            if inactive:
                try:
                    return net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
                except libvirt.libvirtError as exc:  # the test driver keeps one config
                    if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                        raise
            return net.XMLDesc(0)
        return self._host.call("reading network '%s'" % net.name(), read)

    def _flag(self, net: Any, what: str) -> bool:
        fn = {"active": lambda _c: net.isActive(), "persistent": lambda _c: net.isPersistent(),
              "autostart": lambda _c: net.autostart()}[what]
        return bool(self._host.call("reading network '%s'" % net.name(), fn))

    def network_users(self, name: str) -> list[str]:
        """Running domains with an interface on the network (ports, or domain XML where no port API)."""
        net = self._lookup(name)
        if net is None or not self._flag(net, "active"):
            return []
        try:
            ports = self._host.call("listing ports of network '%s'" % name, lambda _c: net.listAllPorts(0))
            owners = set()
            for port in ports:
                pxml = xmlutil.parse(self._host.call("reading a network port", lambda _c, p=port: p.XMLDesc(0)))
                owners.add(pxml.findtext("owner/name") or "?")
            return sorted(owners)
        except (OperationFailed, AttributeError):
            pass  # no port API (test driver, libvirt < 5.5): read the running domains
        users = []
        for dom in self._host.list_instance_domains(only_running=True):
            dxml = xmlutil.parse(self._host.call("reading domain '%s'" % dom.name(), lambda _c, d=dom: d.XMLDesc(0)))
            if dxml.xpath("devices/interface[@type='network']/source[@network=$n]", n=name):
                users.append(dom.name())
        return sorted(users)

    # -- the mutating calls: recorded always, run only outside check mode
    def _do(self, action: str, what: str, fn: Callable[[Any], Any]) -> Any:
        self.actions.append(action)
        if self.check_mode:
            return None
        return self._host.call(what, fn)

    def _refuse_if_used(self, name: str, verb: str, force: bool) -> None:
        users = self.network_users(name)
        if users and not force:
            raise OperationFailed("network '%s' on %s is used by running domain(s) %s; not %s it without force"
                                  % (name, self._host.uri, ", ".join(users), verb), uri=self._host.uri)

    def _define(self, xml: str) -> None:
        def define(conn: Any) -> Any:
            flags = getattr(libvirt, "VIR_NETWORK_DEFINE_VALIDATE", 0)
            if hasattr(conn, "networkDefineXMLFlags"):
                try:
                    return conn.networkDefineXMLFlags(xml, flags)
                except libvirt.libvirtError as exc:
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
                        raise
            return conn.networkDefineXML(xml)
        self._do("define", "defining network", define)

    def _update(self, net: Any, command: int, section: int, index: int, xml: str, live: bool, label: str) -> None:
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG | (libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE if live else 0)
        self._do(label, "updating network '%s' (%s)" % (net.name(), label),
                 lambda _c: net.update(command, section, index, xml, flags))

    # -- converging
    def ensure(self, spec: dict[str, Any] | None = None, xml: str | None = None, state: str = "present",
               autostart: bool | None = None, restart_on_change: bool = False, force: bool = False,
               name: str | None = None) -> dict[str, Any]:
        """Bring the network to ``state`` and ``spec``; returns changed, actions, before/after XML, pending_restart."""
        if state not in STATES:
            raise InvalidSpec("state", "%r is not one of %s" % (state, ", ".join(STATES)))
        desired = None
        if xml is not None:
            el = xmlutil.parse(xml, "xml")
            xmlutil.validate(el, "network", "xml")
            desired = check_spec(parse_network(el)["spec"])
            if name and desired["name"] != name:
                raise InvalidSpec("xml", "the XML defines network '%s', not '%s'" % (desired["name"], name))
        elif spec is not None:
            desired = check_spec(spec)
        name = desired["name"] if desired else name
        if not name:
            raise InvalidSpec("name", "required")
        if desired is not None:
            network_config(desired)  # schema check before anything is touched
        self.actions = []
        net = self._lookup(name)
        before = self._xml(net, inactive=True) if net is not None else None
        result: dict[str, Any] = {"name": name, "pending_restart": False}

        if state == "absent":
            if net is not None:
                if self._flag(net, "active"):
                    self._refuse_if_used(name, "removing", force)
                    self._do("destroy", "stopping network '%s'" % name, lambda _c: net.destroy())
                if self._flag(net, "persistent"):
                    self._do("undefine", "removing network '%s'" % name, lambda _c: net.undefine())
            return self._result(result, before, None)

        if net is None:
            if desired is None:
                raise InvalidSpec("name", "network '%s' does not exist; give its settings or xml" % name)
            self._define(xml if xml is not None else xmlutil.to_string(network_config(desired)))
            net = None if self.check_mode else self._lookup(name)
            active = False
        else:
            active = self._flag(net, "active")
            if desired is not None:
                self._converge(net, desired, before, active, xml, restart_on_change, force, result)

        wants_active = {"active": True, "inactive": False}.get(state)
        if wants_active is True and not active:
            self._do("start", "starting network '%s'" % name, lambda _c: net.create())
            result["pending_restart"] = False
        elif wants_active is False and active:
            self._refuse_if_used(name, "stopping", force)
            self._do("stop", "stopping network '%s'" % name, lambda _c: net.destroy())
            result["pending_restart"] = False
        if autostart is not None and (net is None or self._flag(net, "autostart") != autostart):
            self._do("autostart" if autostart else "no-autostart", "setting autostart of network '%s'" % name,
                     lambda _c: net.setAutostart(1 if autostart else 0))
        after = before
        if self.check_mode:
            if "define" in self.actions or any(a.startswith("dhcp-") for a in self.actions):
                cur = parse_network(before) if before else {}
                after = xmlutil.to_string(network_config(desired, cur.get("uuid"), cur.get("mac"),
                                                         cur.get("bridge_name")))
        else:
            net = self._lookup(name)
            after = self._xml(net, inactive=True) if net is not None else None
        return self._result(result, before, after)

    def _result(self, result: dict[str, Any], before: str | None, after: str | None) -> dict[str, Any]:
        result.update({"changed": bool(self.actions), "actions": list(self.actions),
                       "before": before, "after": after})
        return result

    def _converge(self, net: Any, desired: dict[str, Any], before: str, active: bool, xml: str | None,
                  restart_on_change: bool, force: bool, result: dict[str, Any]) -> None:
        """Change an existing network: DHCP via update (live + config), the rest by redefining."""
        current = _current_spec(before)
        diffs = differences(desired, current)
        dhcp_only = bool(diffs) and all(d.endswith(".dhcp.hosts") or d.endswith(".dhcp.ranges") for d in diffs)
        if dhcp_only:
            self._update_dhcp(net, desired, current, before, active)
        elif diffs:
            cur = parse_network(before)
            new_xml = xmlutil.to_string(network_config(desired, cur["uuid"], cur["mac"], cur["bridge_name"]))
            if xml is not None:  # the user's own XML, with libvirt's generated ids carried over
                el = xmlutil.parse(xml, "xml")
                if el.find("uuid") is None and cur["uuid"]:
                    uuid = etree.Element("uuid")
                    uuid.text = cur["uuid"]
                    el.insert(1, uuid)
                new_xml = xmlutil.to_string(el)
            self._define(new_xml)
        result["differences"] = diffs
        if active:
            live = desired if self.check_mode and diffs else None
            live_diffs = differences(desired, _current_spec(self._xml(net, inactive=False))) if live is None else \
                [d for d in diffs if not (d.endswith(".dhcp.hosts") or d.endswith(".dhcp.ranges"))]
            if live_diffs:
                if restart_on_change:
                    self._refuse_if_used(net.name(), "restarting", force)
                    self._do("stop", "stopping network '%s'" % net.name(), lambda _c: net.destroy())
                    self._do("start", "starting network '%s'" % net.name(), lambda _c: net.create())
                else:
                    result["pending_restart"] = True

    def _update_dhcp(self, net: Any, desired: dict[str, Any], current: dict[str, Any], before: str,
                     active: bool) -> None:
        """Add, modify and delete DHCP hosts and ranges in place (live and persistent)."""
        order = [_ip_key(i) for i in current["ips"]]
        cips = {_ip_key(i): i for i in current["ips"]}
        section_host = libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST
        section_range = libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE
        for dip in desired["ips"]:
            key = _ip_key(dip)
            cip = cips[key]
            index = order.index(key)
            ch = {_host_key(h): h for h in cip["dhcp"]["hosts"]}
            dh = {_host_key(h): h for h in dip["dhcp"]["hosts"]}
            for k, h in ch.items():
                if k not in dh:
                    self._update(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section_host, index,
                                 host_xml(h), active, "dhcp-host-delete %s" % k)
            for k, h in dh.items():
                if k in ch and ch[k] != h:
                    self._update(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY, section_host, index,
                                 host_xml(h), active, "dhcp-host-modify %s" % k)
                elif k not in ch:
                    self._update(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section_host, index,
                                 host_xml(h), active, "dhcp-host-add %s" % k)
            cr = list(cip["dhcp"]["ranges"])
            dr = dip["dhcp"]["ranges"]
            for r in cr:
                if r not in dr:
                    self._update(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section_range, index,
                                 range_xml(r), active, "dhcp-range-delete %s-%s" % (r["start"], r["end"]))
            for r in dr:
                if r not in cr:
                    self._update(net, libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section_range, index,
                                 range_xml(r), active, "dhcp-range-add %s-%s" % (r["start"], r["end"]))
