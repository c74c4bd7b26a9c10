"""firewall.py without a connection: structured rules <-> nwfilter XML, checked by nwfilter.rng."""

from __future__ import annotations

import pytest

from ansible_collections.hypervisor.libvirt.plugins.module_utils import firewall as fw
from ansible_collections.hypervisor.libvirt.plugins.module_utils import xmlutil
from ansible_collections.hypervisor.libvirt.plugins.module_utils.errors import InvalidSpec

pytestmark = pytest.mark.skipif(xmlutil.schema_path("nwfilter") is None, reason="libvirt schemas not installed")

_MAC = "52:54:00:aa:bb:cc"


def sample(protocol: str, attr: str):
    """A valid value for every attribute nwfilter.rng knows, per protocol family."""
    v6 = protocol.endswith("-ipv6") or protocol in ("ipv6", "icmpv6")
    if "macaddr" in attr or "macmask" in attr or attr.endswith("address") or attr.endswith("address-mask"):
        return _MAC
    if attr in ("srcipaddr", "dstipaddr", "srcipfrom", "srcipto", "dstipfrom", "dstipto"):
        return "fe80::1" if v6 else "10.0.0.1"
    if attr in ("arpsrcipaddr", "arpdstipaddr"):
        return "10.0.0.2"
    if attr in ("srcipmask", "dstipmask"):
        return 64 if v6 else 24
    return {
        "match": False, "state": "NEW,ESTABLISHED", "ipset": "hvlset", "ipsetflags": "src,dst",
        "protocolid": "ipv4", "encap-protocol": "0x86dd", "vlanid": 42, "dscp": 10,
        "connlimit-above": 5, "type": 8, "code": 0, "typeend": 9, "codeend": 1, "comment": "a comment",
        "opcode": "Request", "protocoltype": "0x800", "gratuitous": True, "hwtype": 1,
        "protocol": "icmpv6" if v6 else "tcp", "flags": 1 if protocol == "stp" else "SYN,ACK/SYN",
        "root-cost": 100000,
    }.get(attr, 7)


def full_rule(protocol: str) -> dict:
    return {"action": "accept", "direction": "inout", "priority": 100,
            protocol: {fw._key_name(a): sample(protocol, a) for a in fw.PROTOCOLS[protocol]}}


@pytest.mark.parametrize("protocol", sorted(fw.PROTOCOLS))
def test_every_protocol_with_every_attribute_validates_and_round_trips(protocol):
    rule = full_rule(protocol)
    el = fw.filter_config("hvl-ut-p", [rule])  # raises unless nwfilter.rng accepts it
    if protocol != "stp":  # stp: libxml2 needs exponential time on all its attributes at once
        assert xmlutil.validate(el, "nwfilter")
    node = el.find("rule/%s" % protocol)
    assert set(node.attrib) == set(fw.PROTOCOLS[protocol])
    back = fw.parse_filter(xmlutil.to_string(el))
    assert fw.filters_equal(back, {"name": "hvl-ut-p", "rules": [rule]})


def test_filter_xml_structure():
    xml = fw.filter_xml("hvl-ut-web", chain="ipv4", priority=-650, uuid="0c0b0c0b-0000-4000-8000-000000000001",
                        filterrefs=[{"filter": "clean-traffic", "parameters": {"IP": ["10.0.0.1", "10.0.0.2"]}},
                                    "allow-dhcp"],
                        rules=[{"action": "drop", "direction": "in", "tcp": {"dstportstart": 80}},
                               {"action": "accept", "direction": "out", "statematch": False}])
    expected = """
    <filter name='hvl-ut-web' chain='ipv4' priority='-650'>
      <uuid>0c0b0c0b-0000-4000-8000-000000000001</uuid>
      <filterref filter='clean-traffic'>
        <parameter name='IP' value='10.0.0.1'/><parameter name='IP' value='10.0.0.2'/>
      </filterref>
      <filterref filter='allow-dhcp'/>
      <rule action='drop' direction='in'><tcp dstportstart='80'/></rule>
      <rule action='accept' direction='out' statematch='false'/>
    </filter>"""
    assert xmlutil.xml_equal(xml, expected)


def test_variables_are_allowed_where_libvirt_allows_them():
    rule = {"action": "accept", "direction": "out",
            "ip": {"srcipaddr": "$IP", "srcmacaddr": "$MAC", "dstportstart": "$PORTS[@1]"}}
    el = fw.filter_config("hvl-ut-v", [rule])
    assert el.find("rule/ip").get("srcipaddr") == "$IP"


@pytest.mark.parametrize("rules,path,words", [
    ([{"action": "drop", "direction": "in"}, {"action": "drop", "direction": "in"},
      {"action": "drop", "direction": "in"}, {"action": "drop", "direction": "in", "tcp": {"dstprt": 80}}],
     "rules[3].tcp.dstprt", "dstportstart"),
    ([{"action": "drop", "direction": "in", "tcpv4": {}}], "rules[0].tcpv4", "udplite-ipv6"),
    ([{"action": "drop", "direction": "in", "tcp": {}, "udp": {}}], "rules[0].udp", "one protocol"),
    ([{"action": "block", "direction": "in"}], "rules[0].action", "reject"),
    ([{"action": "drop", "direction": "both"}], "rules[0].direction", "inout"),
    ([{"action": "drop", "direction": "in", "priority": 5000}], "rules[0].priority", "-1000"),
    ([{"action": "drop", "direction": "in", "priority": "--5"}], "rules[0].priority", "-1000"),
    ([{"action": "drop", "direction": "in", "priority": 1.5}], "rules[0].priority", "-1000"),
    ([{"action": "accept", "direction": "in", "statematch": "maybe", "tcp": {}}], "rules[0].statematch", "false"),
    ([{"action": "accept", "direction": "in", "statematch": 2}], "rules[0].statematch", "true"),
    ([{"action": "accept", "direction": "in", "statematch": ""}], "rules[0].statematch", "false"),
    ([{"action": "accept", "direction": "in", "statematch": [False]}], "rules[0].statematch", "false"),
    ([{"action": "DROP", "direction": "in"}], "rules[0].action", "drop"),
    ([{"direction": "in"}], "rules[0].action", "accept"),
    ([{"action": "drop"}], "rules[0].direction", "inout"),
    ([{"action": "drop", "direction": "in", "tcp": {"dstportstart": 70000}}], "rules[0].tcp.dstportstart", "70000"),
    ([{"action": "drop", "direction": "in", "ip": {"srcipaddr": "10.0.0"}}], "rules[0].ip.srcipaddr", "10.0.0"),
    ([{"action": "drop", "direction": "in", "tcp": {"state": "NEWISH"}}], "rules[0].tcp.state", "NEWISH"),
    ([{"action": "drop", "direction": "in", "arp": {"srcipaddr": "10.0.0.1"}}], "rules[0].arp.srcipaddr", "arpsrcipaddr"),
    ([{"action": "drop", "direction": "in", "mac": {"protocolid": 12}}], "rules[0].mac.protocolid", "12"),
    ([{"action": "drop", "direction": "in",
       "stp": {"type": 1, "flags": 2, "root-cost": 3, "age": 4, "port": 5, "max-age": 6, "hello-time": 7,
               "forward-delay": 8, "root-priority": 9, "sender-priority": 10, "port-hi": 11, "age-hi": 12,
               "root-address": "x"}}],
     "rules[0].stp.root_address", "'x'"),
])
def test_bad_rules_name_the_path(rules, path, words):
    with pytest.raises(InvalidSpec) as err:
        fw.filter_config("hvl-ut-bad", rules)
    assert err.value.path == path
    assert words in str(err.value)


@pytest.mark.parametrize("value,stored", [
    (False, "false"), ("false", "false"), ("FALSE", "false"), ("no", "false"), (0, "false"), ("0", "false"),
    (True, None), ("true", None), ("Yes", None), (1, None), ("1", None), (None, None),
])
def test_statematch_spellings(value, stored):
    # libvirt's schema knows only statematch='false'/'0'; true is its default and left out
    rule = {"action": "accept", "direction": "in", "statematch": value, "tcp": {}}
    el = fw.filter_config("hvl-ut-sm", [rule])
    assert el.find("rule").get("statematch") == stored
    back = fw.parse_filter(xmlutil.to_string(el))
    assert fw.filters_equal(back, {"name": "hvl-ut-sm", "rules": [rule]})


def test_bad_statematch_is_refused_by_the_comparison_too():
    # canonical_filter must not read a bad value as "true" (the silent drop QA saw)
    with pytest.raises(InvalidSpec) as err:
        fw.filters_equal({"name": "f", "rules": [{"action": "accept", "direction": "in", "statematch": "maybe"}]},
                         {"name": "f", "rules": [{"action": "accept", "direction": "in"}]})
    assert err.value.path == "rules[0].statematch"
    assert "'maybe'" in str(err.value)


@pytest.mark.parametrize("kwargs,path", [
    ({"name": "1bad"}, "name"),
    ({"name": "has space"}, "name"),
    ({"name": "ok", "chain": "ipv5"}, "chain"),
    ({"name": "ok", "priority": 2000}, "priority"),
    ({"name": "ok", "filterrefs": [{"filter": "x", "params": {}}]}, "filterrefs[0].params"),
    ({"name": "ok", "filterrefs": [{"filter": "x", "parameters": {"IP": "10.0.0.1/24"}}]}, "filterrefs[0].parameters.IP"),
])
def test_bad_filter_fields_name_the_path(kwargs, path):
    with pytest.raises(InvalidSpec) as err:
        fw.filter_config(**kwargs)
    assert err.value.path == path


def test_semantic_compare_ignores_what_libvirt_normalises():
    ours = {"name": "f", "rules": [{"action": "accept", "direction": "in",
                                    "tcp": {"srcmacaddr": "AA:BB:CC:DD:EE:FF", "dstportstart": 80, "state": "NEW"}},
                                   {"action": "drop", "direction": "in", "mac": {"protocolid": "0x0800"}},
                                   {"action": "drop", "direction": "in", "ip": {"protocol": "tcp", "dscp": "0x0a"}}]}
    libvirts = fw.parse_filter("""
      <filter name='f' chain='root'><uuid>67353d83-baeb-403a-9eec-39a549793cf6</uuid>
        <rule action='accept' direction='in' priority='500'>
          <tcp srcmacaddr='aa:bb:cc:dd:ee:ff' state='NEW' dstportstart='0x50'/></rule>
        <rule action='drop' direction='in' priority='500'><mac protocolid='ipv4'/></rule>
        <rule action='drop' direction='in' priority='500'><ip protocol='6' dscp='10'/></rule>
      </filter>""")
    assert fw.filters_equal(ours, libvirts)
    assert fw.filters_equal({"name": "g", "chain": "ipv4"},
                            fw.parse_filter("<filter name='g' chain='ipv4' priority='-700'/>"))


def test_libvirts_rewrites_of_macs_masks_and_first_values_are_no_difference():
    ours = {"name": "f", "rules": [
        {"action": "accept", "direction": "in",
         "ip": {"srcmacaddr": "1:2:3:4:5:6", "srcipmask": "255.255.255.255", "dstipmask": "255.255.0.0"}},
        {"action": "drop", "direction": "in", "ipv6": {"srcipmask": "ffff:ffff:ffff:ffff::"}},
        {"action": "drop", "direction": "out", "tcp": {"srcipaddr": "$B[@0]", "dstportstart": "$P[@1]"}}]}
    libvirts = fw.parse_filter("""
      <filter name='f' chain='root'>
        <rule action='accept' direction='in' priority='500'>
          <ip srcmacaddr='01:02:03:04:05:06' srcipmask='32' dstipmask='16'/></rule>
        <rule action='drop' direction='in' priority='500'><ipv6 srcipmask='64'/></rule>
        <rule action='drop' direction='out' priority='500'><tcp srcipaddr='$B' dstportstart='$P[@1]'/></rule>
      </filter>""")
    assert fw.filter_differences(ours, libvirts) == []
    libvirts["rules"][0]["ip"]["srcipmask"] = "24"
    assert fw.filter_differences(ours, libvirts) == [{"path": "rules[0].ip.srcipmask", "before": 24, "after": 32}]


@pytest.mark.parametrize("change", [
    lambda s: s["rules"][0]["tcp"].update(dstportstart=81),
    lambda s: s["rules"][0].update(action="drop"),
    lambda s: s["rules"][0].update(priority=499),
    lambda s: s["rules"].reverse(),
    lambda s: s.update(chain="ipv4"),
    lambda s: s["filterrefs"][0]["parameters"].update(IP="10.0.0.9"),
    lambda s: s["rules"][0]["tcp"].update(comment="Web"),
])
def test_semantic_compare_sees_real_changes(change):
    def spec():
        return {"name": "f", "filterrefs": [{"filter": "clean-traffic", "parameters": {"IP": "10.0.0.1"}}],
                "rules": [{"action": "accept", "direction": "in", "tcp": {"dstportstart": 80, "comment": "web"}},
                          {"action": "drop", "direction": "in", "all": {}}]}
    changed = spec()
    change(changed)
    assert not fw.filters_equal(spec(), changed)
    assert fw.filters_equal(spec(), spec())


def test_parse_filter_gives_back_the_structured_form():
    spec = fw.parse_filter("""
      <filter name='hvl-ut-p' chain='arp' priority='-500'>
        <uuid>67353d83-baeb-403a-9eec-39a549793cf6</uuid>
        <filterref filter='clean-traffic'><parameter name='IP' value='1.1.1.1'/><parameter name='IP' value='1.1.1.2'/>
          <parameter name='MAC' value='52:54:00:00:00:01'/></filterref>
        <rule action='drop' direction='inout' priority='10' statematch='false'>
          <stp root-priority='5' srcmacaddr='52:54:00:00:00:02'/></rule>
      </filter>""")
    assert spec == {
        "name": "hvl-ut-p", "uuid": "67353d83-baeb-403a-9eec-39a549793cf6", "chain": "arp", "priority": -500,
        "filterrefs": [{"filter": "clean-traffic",
                        "parameters": {"IP": ["1.1.1.1", "1.1.1.2"], "MAC": "52:54:00:00:00:01"}}],
        "rules": [{"action": "drop", "direction": "inout", "priority": 10, "statematch": False,
                   "stp": {"root_priority": "5", "srcmacaddr": "52:54:00:00:00:02"}}],
    }


def test_instance_filter_spec_is_novas_base_filter():
    firewall = fw.NWFilterFirewall(host=None)
    assert firewall.instance_filter_name("web 1", "52:54:00:AA:BB:CC") == "hvl-instance-web_1-525400aabbcc"
    spec = firewall.instance_filter_spec("web1", ip=["10.0.0.5"], dhcp_server="10.0.0.1",
                                         rules=[{"action": "accept", "direction": "in", "tcp": {"dstportstart": 22}}])
    assert spec["filterrefs"] == [{"filter": "clean-traffic", "parameters": {"IP": ["10.0.0.5"]}},
                                  {"filter": "allow-dhcp-server", "parameters": {"DHCPSERVER": "10.0.0.1"}}]
    el = fw.filter_config(spec["name"], spec["rules"], spec["filterrefs"], spec["chain"])
    assert el.find("rule/tcp").get("dstportstart") == "22"
    learn = firewall.instance_filter_spec("web1", allow_dhcp=True)
    assert learn["filterrefs"] == [{"filter": "clean-traffic", "parameters": {}},
                                   {"filter": "allow-dhcp", "parameters": {}}]


def test_match_yes_is_libvirts_default_and_match_no_is_not():
    """libvirt's own no-arp-ip-spoofing says <arp match='yes' .../>; libvirt stores it without match."""
    def spec(**arp):
        return {"name": "f", "chain": "arp-ip", "priority": -510, "filterrefs": [],
                "rules": [{"action": "return", "direction": "out", "priority": 400,
                           "arp": dict({"arpsrcipaddr": "$IP"}, **arp)}]}
    assert fw.canonical_filter(spec(match="yes")) == fw.canonical_filter(spec())
    assert fw.canonical_filter(spec(match="no")) != fw.canonical_filter(spec())
