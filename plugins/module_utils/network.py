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

import copy
import ipaddress
import re
from typing import Any, Callable

from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.deps import etree, libvirt
from ansible_collections.hypervisor.libvirt.plugins.module_utils.guest_spec import IFNAME_RE
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import (
    HypervisorError,
    InvalidSpec,
    NotFound,
    OperationFailed,
)

FORWARD_MODES = ("none", "isolated", "nat", "route", "bridge", "open")
L3_MODES = ("none", "nat", "route", "open")  # libvirt's own bridge: name, stp, delay, mac, mtu
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


# A DHCP or DNS host name: RFC 1123 labels joined by dots (what dnsmasq takes as a name, nothing else).
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
# A network name libvirt can hold in a file name and in XML: no '/', no control characters.
_NET_NAME_RE = re.compile(r"^[^/\x00-\x1f\x7f]+$")


def _hostname(value: Any, path: str) -> str:
    text = value if isinstance(value, str) else str(value)
    if isinstance(value, (bool, dict, list)) or not _HOSTNAME_RE.match(text):
        raise InvalidSpec(path, "%r is not a host name (letters, digits and '-' in dot-separated labels of at most "
                          "63 characters)" % (value,))
    return text


def _list(value: Any, path: str, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidSpec(path, "expected a list of %s, got %r" % (what, value))
    return value


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


def _check_ip(ip: Any, path: str, strict: bool = True) -> dict[str, Any]:
    """One ``ips`` entry, normalised: family, address, prefix, dhcp ranges and hosts.

    ``strict`` (user input) also refuses what libvirt's define accepts but its
    in-place updates (``virNetworkUpdate``) refuse: two ranges alike, and two
    hosts sharing a MAC, a name or an IP.
    """
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
    for i, rng in enumerate(_list(dhcp.get("ranges"), "%s.dhcp.ranges" % path, "{start, end}")):
        p = "%s.dhcp.ranges[%d]" % (path, i)
        rng = _dict(rng, p, ("start", "end"))
        start, end = (_addr(rng.get(k), "%s.%s" % (p, k), version) for k in ("start", "end"))
        for k, v in (("start", start), ("end", end)):
            if ipaddress.ip_address(v) not in net:
                raise InvalidSpec("%s.%s" % (p, k), "%s is outside %s" % (v, net))
        if ipaddress.ip_address(start) > ipaddress.ip_address(end):
            raise InvalidSpec(p, "start %s is after end %s" % (start, end))
        entry = {"start": start, "end": end}
        if strict and entry in ranges:
            raise InvalidSpec(p, "%s-%s is already given as ranges[%d]" % (start, end, ranges.index(entry)))
        ranges.append(entry)
    for i, host in enumerate(_list(dhcp.get("hosts"), "%s.dhcp.hosts" % path, "{mac, name, ip}")):
        p = "%s.dhcp.hosts[%d]" % (path, i)
        host = _dict(host, p, ("mac", "name", "ip"))
        if not host.get("mac") and not host.get("name"):
            raise InvalidSpec(p, "a DHCP host needs mac or name")
        mac = _mac(host["mac"], "%s.mac" % p) if host.get("mac") else None
        if version == 6 and mac:
            raise InvalidSpec("%s.mac" % p, "libvirt identifies IPv6 DHCP hosts by name, not by MAC")
        if not host.get("ip"):
            raise InvalidSpec("%s.ip" % p, "required: a static DHCP host reserves an address")
        name = host.get("name")
        if name and strict:
            name = _hostname(name, "%s.name" % p)
        entry = {"mac": mac, "name": str(name) if name else None,
                 "ip": _addr(host["ip"], "%s.ip" % p, version)}
        if ipaddress.ip_address(entry["ip"]) not in net:
            raise InvalidSpec("%s.ip" % p, "%s is outside %s" % (entry["ip"], net))
        for key in ("mac", "name", "ip") if strict else ():
            other = next((j for j, h in enumerate(hosts) if entry[key] is not None and h[key] == entry[key]), None)
            if other is not None:
                raise InvalidSpec("%s.%s" % (p, key), "%s is already given to hosts[%d]" % (entry[key], other))
        hosts.append(entry)
    # libvirt stores no empty <dhcp/>: no ranges and no hosts is no DHCP
    return {"family": "ipv%d" % version, "address": address, "prefix": prefix,
            "dhcp": {"ranges": ranges, "hosts": hosts} if (ranges or hosts) else None}


def check_spec(spec: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    """A user's network spec, validated and normalised; errors name the path.

    Everything is checked before anything is touched. ``strict=False`` reads
    what libvirt already stores, which may hold what its define accepts but
    this module would refuse as input (duplicate DHCP hosts).
    """
    spec = _dict(spec, "", SPEC_KEYS)
    name = spec.get("name")
    if not name or not isinstance(name, str) or not _NET_NAME_RE.match(name):
        raise InvalidSpec("name", "a network name is required (no '/', no control characters), got %r" % (name,))
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
    if bridge.get("name") is not None and not IFNAME_RE.match(str(bridge["name"])):
        raise InvalidSpec("bridge.name", "%r: a Linux interface name has at most 15 characters, letters, digits, "
                          "'_', '.', '-' and ':'" % bridge["name"])
    if forward.get("dev") is not None and not IFNAME_RE.match(str(forward["dev"])):
        raise InvalidSpec("forward.dev", "%r is not a host interface name" % forward["dev"])
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
    ips = [_check_ip(ip, "ips[%d]" % i if spec.get("ips") is not None else "ip", strict) for i, ip in enumerate(raw_ips)]
    for i, ip in enumerate(ips):  # libvirt serves DHCP on one address per family
        first = next(j for j, o in enumerate(ips) if o["family"] == ip["family"] and (o["dhcp"] or j == i))
        if ip["dhcp"] and first != i:
            raise InvalidSpec("ips[%d].dhcp" % i, "libvirt serves DHCP on one %s address per network; ips[%d] has it"
                              % (ip["family"].replace("ipv", "IPv"), first))
    if mode == "bridge" and ips:
        raise InvalidSpec("ips", "a network with forward mode bridge has no IP of its own")
    domain = spec.get("domain")
    if isinstance(domain, str):
        domain = {"name": domain}
    domain = dict(_dict(domain, "domain", ("name", "local_only")))
    if domain and not domain.get("name"):
        raise InvalidSpec("domain.name", "required")
    if domain.get("name"):
        domain["name"] = _hostname(domain["name"], "domain.name")
    if domain.get("local_only") is not None:
        domain["local_only"] = _bool(domain["local_only"], "domain.local_only")
    dns = dict(_dict(spec.get("dns"), "dns", ("enable", "forwarders", "hosts")))
    if dns.get("enable") is not None:
        dns["enable"] = _bool(dns["enable"], "dns.enable")
    dns["forwarders"] = [_addr(f, "dns.forwarders[%d]" % i)
                         for i, f in enumerate(_list(dns.get("forwarders"), "dns.forwarders", "addresses"))]
    dns_hosts = []
    for i, h in enumerate(_list(dns.get("hosts"), "dns.hosts", "{ip, hostnames}")):
        h = _dict(h, "dns.hosts[%d]" % i, ("ip", "hostnames"))
        names = h.get("hostnames") or []
        if isinstance(names, str):
            names = [names]
        if not names:
            raise InvalidSpec("dns.hosts[%d].hostnames" % i, "at least one hostname")
        if not isinstance(names, list):
            raise InvalidSpec("dns.hosts[%d].hostnames" % i, "expected a list of host names, got %r" % (names,))
        names = [_hostname(n, "dns.hosts[%d].hostnames[%d]" % (i, j)) if strict else str(n) for j, n in enumerate(names)]
        dns_hosts.append({"ip": _addr(h.get("ip"), "dns.hosts[%d].ip" % i), "hostnames": names})
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
    for an existing network, so redefining it keeps them. The XML is in the
    form libvirt stores it (element order, the bridge's stp and delay, the
    forward dev as an <interface> too), so what is defined is what is read back.
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
        if fwd.get("dev"):
            xmlutil.sub(f, "interface", {"dev": fwd["dev"]})
    br = s["bridge"]
    name = br.get("name") or bridge_name
    if fwd["mode"] == "bridge":
        if name:
            xmlutil.sub(root, "bridge", {"name": name})
    else:  # libvirt's defaults written out, as libvirt stores them
        xmlutil.sub(root, "bridge", {"name": name, "stp": "off" if br.get("stp") is False else "on",
                                     "delay": br.get("delay") or 0})
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
        if ip.get("dhcp"):
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


def _host_tuple(h: dict[str, Any]) -> tuple:
    return tuple(h.get(k) or "" for k in ("mac", "name", "ip"))


def _range_tuple(r: dict[str, Any]) -> tuple:
    return (r["start"], r["end"])


def _dhcp_lists(ip: dict[str, Any]) -> dict[str, list]:
    return {"ranges": list((ip.get("dhcp") or {}).get("ranges") or []),
            "hosts": list((ip.get("dhcp") or {}).get("hosts") or [])}


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
    else:  # no DHCP is no ranges and no hosts (libvirt drops an empty <dhcp/>)
        for key, dip in dips.items():
            dd, cd = _dhcp_lists(dip), _dhcp_lists(cips[key])
            if sorted(map(_range_tuple, dd["ranges"])) != sorted(map(_range_tuple, cd["ranges"])):
                diffs.append("ips[%s].dhcp.ranges" % dip["address"])
            if sorted(map(_host_tuple, dd["hosts"])) != sorted(map(_host_tuple, cd["hosts"])):
                diffs.append("ips[%s].dhcp.hosts" % dip["address"])
    return diffs


def _current_spec(xml: str) -> dict[str, Any]:
    """libvirt's XML in check_spec() form (libvirt's XML is trusted, so it always checks)."""
    return check_spec(parse_network(xml)["spec"], strict=False)


# ---------------------------------------------------------------------- DHCP in place
# virNetworkUpdate applies one command at a time, each on its own terms (libvirt's
# virNetworkDefUpdateIPDHCPHost/-Range): an add is refused when any host already
# has its MAC, name or IP; a modify replaces the FIRST host sharing its MAC, IP or
# name (which need not be the one meant); a delete removes the first host whose
# given attributes all match; a range is added or deleted only whole; and an add
# is refused while another <ip> of the same family serves DHCP. A plan of steps is
# therefore simulated under those rules, in full, before the first one is sent.
class _Refused(Exception):
    """libvirt would refuse this step."""


class _Step:
    """One virNetworkUpdate call: command add|modify|delete on section host|range of <ip> number ``index``."""

    def __init__(self, command: str, section: str, index: int, entry: dict[str, Any], target: Any = None) -> None:
        self.command, self.section, self.index, self.entry, self.target = command, section, index, entry, target
        what = _host_key(entry) if section == "host" else "%s-%s" % (entry["start"], entry["end"])
        self.label = "dhcp-%s-%s %s" % (section, command, what)

    def xml(self) -> str:
        return host_xml(self.entry) if self.section == "host" else range_xml(self.entry)


def _host_clash(h: dict[str, Any], o: dict[str, Any]) -> bool:
    """libvirt's rule for refusing an add, and for picking the host a modify replaces."""
    return bool((h.get("mac") and o.get("mac") and h["mac"] == o["mac"]) or
                (h.get("name") and h["name"] == o.get("name")) or (h.get("ip") and h["ip"] == o.get("ip")))


def _host_deletes(h: dict[str, Any], o: dict[str, Any]) -> bool:
    """libvirt's rule for the host a delete removes: every attribute given matches."""
    return (not h.get("mac") or not o.get("mac") or h["mac"] == o["mac"]) and \
        (not h.get("name") or h["name"] == o.get("name")) and (not h.get("ip") or h["ip"] == o.get("ip"))


def _dhcp_state(xml: str | Any) -> list[dict[str, Any]]:
    """Per <ip> of a network's XML, in order: family, and its DHCP ranges and hosts (each with its element)."""
    root = xmlutil.parse(xml, "xml") if isinstance(xml, (str, bytes)) else xml
    state = []
    for ip in root.findall("ip"):
        family = ipaddress.ip_address(ip.get("address")).version if ip.get("address") else 4
        hosts, ranges = [], []
        for h in ip.findall("dhcp/host"):
            hosts.append({"mac": (h.get("mac") or "").lower() or None, "name": h.get("name"),
                          "ip": str(ipaddress.ip_address(h.get("ip"))) if h.get("ip") else None, "el": h})
        for r in ip.findall("dhcp/range"):
            ranges.append({"start": str(ipaddress.ip_address(r.get("start"))),
                           "end": str(ipaddress.ip_address(r.get("end"))), "el": r})
        state.append({"family": family, "hosts": hosts, "ranges": ranges})
    return state


def _copy_state(state: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New lists, the same entries (a modify's target is found by identity)."""
    return [dict(ip, hosts=list(ip["hosts"]), ranges=list(ip["ranges"])) for ip in state]


def _simulate(state: list[dict[str, Any]], step: _Step) -> None:
    """Apply ``step`` to ``state`` as libvirt would, or raise _Refused where libvirt would refuse it."""
    if not 0 <= step.index < len(state):
        raise _Refused("%s: the network has no <ip> number %d" % (step.label, step.index))
    ip, e = state[step.index], step.entry
    items = ip["hosts"] if step.section == "host" else ip["ranges"]
    if step.command == "add":
        if any(o is not ip and o["family"] == ip["family"] and (o["hosts"] or o["ranges"]) for o in state):
            raise _Refused("%s: another IPv%d address of the network serves DHCP" % (step.label, ip["family"]))
        if any(_host_clash(e, o) if step.section == "host" else _range_tuple(e) == _range_tuple(o) for o in items):
            raise _Refused("%s: an existing entry has its MAC, name or IP" % step.label)
        items.append(e)
        return
    if step.command == "modify":
        i = next((i for i, o in enumerate(items) if _host_clash(e, o)), None)
    elif step.section == "host":
        i = next((i for i, o in enumerate(items) if _host_deletes(e, o)), None)
    else:
        i = next((i for i, o in enumerate(items) if _range_tuple(e) == _range_tuple(o)), None)
    if i is None:
        raise _Refused("%s: no matching entry" % step.label)
    if step.command == "modify":
        items[i] = e
    else:
        del items[i]


def _runs(state: list[dict[str, Any]], steps: list[_Step]) -> list[dict[str, Any]] | None:
    """The state after ``steps``, or None when libvirt would refuse one of them."""
    state = _copy_state(state)
    try:
        for step in steps:
            _simulate(state, step)
    except _Refused:
        return None
    return state


def _same_dhcp(state: list[dict[str, Any]], want: list[dict[str, Any]]) -> bool:
    return all(sorted(map(_host_tuple, s["hosts"])) == sorted(map(_host_tuple, w["hosts"])) and
               sorted(map(_range_tuple, s["ranges"])) == sorted(map(_range_tuple, w["ranges"]))
               for s, w in zip(state, want))


def plan_dhcp(state: list[dict[str, Any]], want: list[dict[str, Any]]) -> list[_Step] | None:
    """virNetworkUpdate steps taking the DHCP ranges and hosts of ``state`` to ``want`` (both per <ip>).

    Host deletes, host modifies, range deletes, then adds (hosts, ranges): an
    add never meets an entry that is going away, nor another <ip> still
    serving DHCP. A host whose new MAC, name or IP is still held by
    another host would make libvirt modify that other host: it is deleted and
    added instead. Returns None when no plan passes the simulation (libvirt's
    config holding what an in-place update cannot reach, e.g. duplicate hosts).
    """
    replace: set[tuple[int, str]] = set()
    while True:
        deletes, modifies, adds = [], [], []
        for index, (cur, wnt) in enumerate(zip(state, want)):
            wanted = {_host_key(h): h for h in wnt["hosts"]}
            claimed: set[str] = set()
            for c in cur["hosts"]:
                key = _host_key(c)
                if key in wanted and key not in claimed and (index, key) not in replace:
                    claimed.add(key)
                    if _host_tuple(c) != _host_tuple(wanted[key]):
                        modifies.append(_Step("modify", "host", index, wanted[key], target=c))
                else:
                    deletes.append(_Step("delete", "host", index, c))
            adds += [_Step("add", "host", index, h) for key, h in wanted.items() if key not in claimed]
            missing = [_range_tuple(r) for r in wnt["ranges"]]
            for r in cur["ranges"]:
                if _range_tuple(r) in missing:
                    missing.remove(_range_tuple(r))
                else:
                    deletes.append(_Step("delete", "range", index, r))
            adds += [_Step("add", "range", index, r) for r in wnt["ranges"] if _range_tuple(r) in missing]
        sim = _runs(state, sorted(deletes, key=lambda s: s.section))  # hosts, then ranges
        if sim is None:
            return None
        clash = None
        for step in modifies:  # safe only when the target is the one host sharing anything with the new entry
            hosts = sim[step.index]["hosts"]
            if not any(o is step.target for o in hosts) or \
                    any(o is not step.target and _host_clash(step.entry, o) for o in hosts):
                clash = step
                break
            _simulate(sim, step)
        if clash is None:
            break
        replace.add((clash.index, _host_key(clash.entry)))
    host_deletes = [s for s in deletes if s.section == "host"]
    steps = host_deletes + modifies + [s for s in deletes if s not in host_deletes] + sorted(adds, key=lambda s: s.section)
    end = _runs(state, steps)
    return steps if end is not None and _same_dhcp(end, want) else None


def dhcp_after(xml: str, steps: list[_Step]) -> str:
    """``xml`` as libvirt formats it once ``steps`` are applied: ranges, then hosts, then the rest of <dhcp>."""
    root = xmlutil.parse(xml, "xml")
    state = _dhcp_state(root)
    for step in steps:
        _simulate(state, step)
    for index in sorted({s.index for s in steps}):
        ip_el = root.findall("ip")[index]
        old = ip_el.find("dhcp")
        rest = [c for c in old if c.tag not in ("range", "host")] if old is not None else []
        if old is not None:
            ip_el.remove(old)
        if not (state[index]["ranges"] or state[index]["hosts"]):
            continue  # libvirt drops an empty <dhcp>, bootp and all
        dhcp = xmlutil.sub(ip_el, "dhcp")
        for r in state[index]["ranges"]:
            dhcp.append(r["el"] if r.get("el") is not None else etree.fromstring(range_xml(r)))
        for h in state[index]["hosts"]:
            dhcp.append(h["el"] if h.get("el") is not None else etree.fromstring(host_xml(h)))
        for c in rest:
            dhcp.append(c)
    return xmlutil.to_string(root)


def _want_state(desired: dict[str, Any], state_xml: str) -> list[dict[str, Any]] | None:
    """``desired``'s DHCP per <ip> of ``state_xml``, in its order; None when the addresses differ."""
    order = [_ip_key(i) for i in _current_spec(state_xml)["ips"]]
    dips = {_ip_key(i): i for i in desired["ips"]}
    if sorted(order) != sorted(dips):
        return None
    return [_dhcp_lists(dips[key]) for key in order]


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

    def _update(self, net: Any, step: _Step, live: bool, record: bool = True) -> None:
        command = {"add": libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, "modify": libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
                   "delete": libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE}[step.command]
        section = {"host": libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
                   "range": libvirt.VIR_NETWORK_SECTION_IP_DHCP_RANGE}[step.section]
        flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG | (libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE if live else 0)
        xml = step.xml()
        what = "updating network '%s' (%s)" % (net.name(), step.label)

        def fn(_c: Any) -> Any:
            return net.update(command, section, step.index, xml, flags)
        if record:
            self._do(step.label, what, fn)
        else:
            self._host.call(what, fn)

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

        predicted = before
        if net is None:
            if desired is None:
                raise InvalidSpec("name", "network '%s' does not exist; give its settings or xml" % name)
            self._define(xml if xml is not None else xmlutil.to_string(network_config(desired)))
            net = None if self.check_mode else self._lookup(name)
            active = False
        else:
            active = self._flag(net, "active")
            if desired is not None:
                predicted = self._converge(net, desired, before, active, xml, restart_on_change, force, result)

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
        if self.check_mode:  # the persistent XML as the real run will leave it (less the ids a new one gets)
            if before is None and desired is not None:
                predicted = xml if xml is not None else xmlutil.to_string(network_config(desired))
            after = predicted
        else:
            net = self._lookup(name)
            after = self._xml(net, inactive=True) if net is not None else None
        return self._result(result, before, after)

    def _result(self, result: dict[str, Any], before: str | None, after: str | None) -> dict[str, Any]:
        result.update({"changed": bool(self.actions), "actions": list(self.actions),
                       "before": before, "after": after})
        return result

    def _converge(self, net: Any, desired: dict[str, Any], before: str, active: bool, xml: str | None,
                  restart_on_change: bool, force: bool, result: dict[str, Any]) -> str:
        """Change an existing network: DHCP via update (live + config), the rest by redefining.

        Returns the persistent XML as it will be: libvirt's own before-XML with
        the DHCP steps applied, or the XML defined (which is in libvirt's form).
        """
        diffs = differences(desired, _current_spec(before))
        live_before = self._xml(net, inactive=False) if active else None
        after, live_after = before, live_before
        steps = None
        if diffs and all(d.endswith(".dhcp.hosts") or d.endswith(".dhcp.ranges") for d in diffs):
            want = _want_state(desired, before)
            steps = plan_dhcp(_dhcp_state(before), want) if want is not None else None
        if steps is not None:
            # live too, when the running config takes the same steps; else the config only, and a restart is pending
            live = active and _want_state(desired, live_before) == want and _runs(_dhcp_state(live_before), steps) is not None
            self._apply_dhcp(net, steps, live, before)
            after = dhcp_after(before, steps)
            if live:
                live_after = dhcp_after(live_before, steps)
        elif diffs:
            after = self._redefinition(desired, before, xml)
            self._define(after)
        result["differences"] = diffs
        if active:
            if not self.check_mode:
                live_after = self._xml(net, inactive=False)
            if differences(desired, _current_spec(live_after)):
                if restart_on_change:
                    self._refuse_if_used(net.name(), "restarting", force)
                    self._do("stop", "stopping network '%s'" % net.name(), lambda _c: net.destroy())
                    self._do("start", "starting network '%s'" % net.name(), lambda _c: net.create())
                else:
                    result["pending_restart"] = True
        return after

    def _redefinition(self, desired: dict[str, Any], before: str, xml: str | None) -> str:
        """The XML that redefines the network, keeping what libvirt generated and what the request leaves open."""
        cur = parse_network(before)
        if xml is None:
            current = _current_spec(before)
            keep = desired["forward"]["mode"] in L3_MODES and current["forward"]["mode"] in L3_MODES
            return xmlutil.to_string(network_config(carry_over(desired, current), cur["uuid"], cur["mac"],
                                                    cur["bridge_name"] if keep else None))
        return xmlutil.to_string(keep_generated(xmlutil.parse(xml, "xml"), xmlutil.parse(before)))

    def _apply_dhcp(self, net: Any, steps: list[_Step], live: bool, before: str) -> None:
        """Run the planned steps; when one fails, undo those applied (or say exactly which are left)."""
        done: list[_Step] = []
        for step in steps:
            try:
                self._update(net, step, live)
            except HypervisorError as exc:
                if not done:
                    raise
                raise OperationFailed("%s; %s" % (exc.msg, self._undo(net, steps, done, live, before)),
                                      uri=self._host.uri, code=exc.code)
            done.append(step)

    def _undo(self, net: Any, steps: list[_Step], done: list[_Step], live: bool, before: str) -> str:
        """Take the network back to ``before``'s DHCP after a failed step; describe the outcome."""
        original = _dhcp_state(before)
        now = _runs(original, done)
        back = plan_dhcp(now, original) if now is not None else None
        applied = ", ".join(s.label for s in done)
        left = ", ".join(s.label for s in steps[len(done) + 1:]) or "none"
        if back is not None:
            try:
                for step in back:
                    self._update(net, step, live, record=False)
                return "the step(s) applied before it (%s) were rolled back, so the network's DHCP is as it was" % applied
            except HypervisorError as exc:
                reason = "rolling back failed: %s" % exc.msg
        else:
            reason = "no safe way to roll them back"
        return ("the step(s) applied before it (%s) are NOT rolled back (%s); not applied: %s. "
                "Fix the cause and run the task again, it converges from there" % (applied, reason, left))


def carry_over(desired: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """``desired``, completed with the current values of what it leaves open (see differences()).

    Redefining a network for one change must not reset what the request did
    not name: the bridge's stp and delay, the MTU, the forward dev and NAT
    ranges (while the mode stays), DNS enable.
    """
    out = copy.deepcopy(desired)
    df, cf = out["forward"], current["forward"]
    if df["mode"] == cf["mode"]:
        if not df.get("dev") and cf.get("dev"):
            df["dev"] = cf["dev"]
        for key in ("addresses", "ports"):
            if not df["nat"].get(key) and cf["nat"].get(key):
                df["nat"][key] = cf["nat"][key]
    if df["mode"] in L3_MODES and cf["mode"] in L3_MODES:
        for key in ("stp", "delay"):
            if out["bridge"].get(key) is None and current["bridge"].get(key) is not None:
                out["bridge"][key] = current["bridge"][key]
        if out["mtu"] is None:
            out["mtu"] = current["mtu"]
    if out["dns"].get("enable") is None and current["dns"].get("enable") is not None:
        out["dns"]["enable"] = current["dns"]["enable"]
    return out


# libvirt's order of a <network>'s children (virNetworkDefFormatBuf)
_ORDER = ("name", "uuid", "title", "description", "metadata", "forward", "bridge", "mtu", "mac", "domain", "dns",
          "vlan", "bandwidth", "port", "ip", "route", "virtualport", "portgroup")


def keep_generated(el: Any, cur: Any) -> Any:
    """A user's <network> XML with what libvirt generated for the existing one carried over.

    The uuid, and for libvirt's own bridge its name, stp, delay and MAC, when
    the XML leaves them out (libvirt would otherwise pick a new name and MAC);
    children in libvirt's order.
    """
    def mode(root: Any) -> str:
        f = root.find("forward")
        return "none" if f is None else f.get("mode", "nat")
    if el.find("uuid") is None and cur.findtext("uuid"):
        xmlutil.sub(el, "uuid", text=cur.findtext("uuid"))
    if mode(el) in L3_MODES:
        cur_br = cur.find("bridge") if mode(cur) in L3_MODES else None
        br = el.find("bridge")
        if br is None:
            br = xmlutil.sub(el, "bridge")
        for attr, default in (("name", None), ("stp", "on"), ("delay", "0")):
            value = br.get(attr) or (cur_br.get(attr) if cur_br is not None else None) or default
            if value is not None:
                br.set(attr, value)
        if el.find("mac") is None and mode(cur) in L3_MODES and cur.find("mac") is not None:
            xmlutil.sub(el, "mac", {"address": cur.find("mac").get("address")})
    children = [c for c in el if isinstance(c.tag, str)]
    for c in list(el):
        el.remove(c)
    for c in sorted(children, key=lambda c: _ORDER.index(c.tag) if c.tag in _ORDER else len(_ORDER)):
        el.append(c)
    return el
