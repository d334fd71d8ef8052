#!/usr/bin/env python3
"""PFCP (TS 29.244) reference vectors from two independent implementations, scapy
(scapy.contrib.pfcp) and pycrate (pycrate_mobile.TS29244_PFCP), for the outpost-pfcp interop
tests (nfv/pfcp/tests/interop.rs).

    pfcp_vectors.py generate      # prints [{"name", "lib", "hex", "summary"}]
    pfcp_vectors.py decode < IN   # IN: [{"name", "hex"}]; prints
                                  # [{"name", "scapy": {...}, "pycrate": {...}}]

`generate` builds messages with each library and summarises them as that library decodes its
own bytes; `decode` decodes bytes (emitted by the Rust codec) with both libraries. A library's
result is {"summary": S} or {"error": "..."}; pycrate's also has "code" (parse_PFCP's error
code, 0 when the message and its mandatory IEs are complete) and "raw_fallback" (IE types it
knows but could only keep as raw bytes, i.e. failed to decode).

The summary S is the same shape the Rust test computes from the bytes:
    {"type": int, "seid": int|null, "seq": int, "ies": [IE...]}
    IE = {"t": type, "ies": [IE...]}            for grouped IEs (GROUPED below)
       | {"t": type, "v": {...}}                for the IEs with a field extractor below
       | {"t": type, "hex": "value octets"}     for every other IE
"""

import ipaddress
import json
import sys

from scapy.all import raw
from scapy.contrib import pfcp as sp
import pycrate_mobile.TS29244_PFCP as pc
from pycrate_core.base import Buf

# pycrate 0.8.1 copies the Downlink Data Report's mandatory IEs into the Usage Report of a
# Session Report Request (IE 80); TS 29.244 table 7.5.8.3-1 makes URR ID, UR-SEQN and Usage
# Report Trigger mandatory, as for IEs 78 and 79. Use the specification's list.
pc.UsageReportSessionReportReq.MAND = pc.UsageReportSessionDeletionResp.MAND

GROUPED = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 77, 78, 79, 80, 83,
           85, 86, 87, 99}
# IEs whose value is one integer (masked to its meaningful bits).
INTS = {19: 0xff, 20: 0x0f, 42: 0x0f, 28: None, 29: None, 32: None, 40: None, 56: None,
        67: None, 69: None, 70: None, 75: None, 76: None, 81: None, 88: None, 96: None,
        104: None, 108: None, 109: None, 124: 0x3f}
# Flags IEs: the integer of their first N octets, octet 5 least significant.
FLAGS = {37: 2, 39: 1, 43: 2, 44: 1, 62: 1, 63: 2, 89: 1}


def ip(b):
    return None if b is None else str(ipaddress.ip_address(bytes(b)))


def sip(v):
    """scapy keeps addresses as strings."""
    return None if v is None else str(ipaddress.ip_address(v))


def flags(t, value):
    return {"int": int.from_bytes(bytes(value[:FLAGS[t]]), "little")}


# ---------------------------------------------------------------------------------- scapy ---

def scapy_value(ie):
    """The IE's value octets as they were on the wire."""
    return bytes(ie.original)[4:4 + ie.length]


def scapy_first_field(ie):
    for f in ie.fields_desc[2:]:
        if f.name.startswith("spare") or f.name == "extra_data":
            continue
        return ie.getfieldval(f.name)
    return None


def scapy_ie(ie):
    t = ie.ietype
    if t in GROUPED:
        return {"t": t, "ies": [scapy_ie(i) for i in ie.IE_list]}
    g = ie.getfieldval
    if isinstance(ie, sp.IE_NotImplemented) or t & 0x8000:
        return {"t": t, "hex": scapy_value(ie).hex()}
    if t in INTS:
        v = scapy_first_field(ie)
        v = int(v)
        if INTS[t]:
            v &= INTS[t]
        return {"t": t, "v": {"int": v}}
    if t in FLAGS:
        return {"t": t, "v": flags(t, scapy_value(ie))}
    if t == 60:
        kind = g("id_type")
        addr = {0: lambda: g("ipv4"), 1: lambda: sip(g("ipv6")),
                2: lambda: g("id").decode()}[kind]()
        return {"t": t, "v": {"kind": kind, "addr": str(addr)}}
    if t == 57:
        return {"t": t, "v": {"seid": g("seid"), "ipv4": g("ipv4") if g("v4") else None,
                              "ipv6": sip(g("ipv6")) if g("v6") else None}}
    if t == 21:
        ch = g("CH")
        return {"t": t, "v": {
            "v4": g("V4"), "v6": g("V6"), "ch": ch,
            "chid": g("choose_id") if ch and g("CHID") else None,
            "teid": None if ch else g("TEID"),
            "ipv4": g("ipv4") if g("V4") and not ch else None,
            "ipv6": sip(g("ipv6")) if g("V6") and not ch else None}}
    if t == 93:
        return {"t": t, "v": {"sd": g("SD"), "ipv4": g("ipv4") if g("V4") else None,
                              "ipv6": sip(g("ipv6")) if g("V6") else None}}
    if t == 23:
        return {"t": t, "v": {"fd": g("flow_description").decode() if g("FD") else None}}
    if t == 84:
        teid = g("TEID") if (g("GTPUUDPIPV4") or g("GTPUUDPIPV6")) else None
        v4 = g("ipv4") if (g("GTPUUDPIPV4") or g("UDPIPV4") or g("IPV4")) else None
        v6 = sip(g("ipv6")) if (g("GTPUUDPIPV6") or g("UDPIPV6") or g("IPV6")) else None
        return {"t": t, "v": {"desc": scapy_value(ie)[0], "teid": teid, "ipv4": v4,
                              "ipv6": v6}}
    if t == 95:
        return {"t": t, "v": {"desc": g("header")}}
    if t == 25:
        return {"t": t, "v": {"ul": int(g("ul")), "dl": int(g("dl"))}}
    if t in (26, 27):
        return {"t": t, "v": {"ul": g("ul"), "dl": g("dl")}}
    if t in (31, 66, 73):
        return {"t": t, "v": {"total": g("total") if g("TOVOL") else None,
                              "ul": g("uplink") if g("ULVOL") else None,
                              "dl": g("downlink") if g("DLVOL") else None}}
    return {"t": t, "hex": scapy_value(ie).hex()}


def scapy_decode(b):
    m = sp.PFCP(b)
    body = m.payload
    return {"type": m.message_type, "seid": m.seid if m.S else None, "seq": m.seq,
            "ies": [scapy_ie(i) for i in getattr(body, "IE_list", None) or []]}


# -------------------------------------------------------------------------------- pycrate ---

def pc_first(d):
    if not hasattr(d, "_content"):
        return d.get_val()
    for e in d._content:
        if e._name in ("spare", "ext"):
            continue
        return e.get_val()
    return None


def pc_opt(d, name, conv=lambda v: v):
    e = d[name]
    return None if e.get_trans() else conv(e.get_val())


def pc_ie(ie, fallbacks):
    t = ie[0].get_val()
    d = ie[3]
    if type(d) is Buf:
        if t in pc.PFCPIELUT:
            fallbacks.append(t)
        return {"t": t, "hex": d.to_bytes().hex()}
    if t in GROUPED:
        return {"t": t, "ies": [pc_ie(i, fallbacks) for i in d]}
    if t in INTS:
        v = int(pc_first(d))
        if INTS[t]:
            v &= INTS[t]
        return {"t": t, "v": {"int": v}}
    if t in FLAGS:
        return {"t": t, "v": flags(t, d.to_bytes())}
    if t == 60:
        kind = d["Type"].get_val()
        val = d["Val"].get_alt()
        addr = val.decode() if kind == 2 else ip(val.get_val())
        return {"t": t, "v": {"kind": kind, "addr": addr}}
    if t == 57:
        return {"t": t, "v": {"seid": d["SEID"].get_val(), "ipv4": pc_opt(d, "IPv4Addr", ip),
                              "ipv6": pc_opt(d, "IPv6Addr", ip)}}
    if t == 21:
        return {"t": t, "v": {
            "v4": d["V4"].get_val(), "v6": d["V6"].get_val(), "ch": d["CH"].get_val(),
            "chid": pc_opt(d, "CHOOSE_ID"), "teid": pc_opt(d, "TEID"),
            "ipv4": pc_opt(d, "IPv4Addr", ip), "ipv6": pc_opt(d, "IPv6Addr", ip)}}
    if t == 93:
        return {"t": t, "v": {"sd": d["SD"].get_val(), "ipv4": pc_opt(d, "IPv4Addr", ip),
                              "ipv6": pc_opt(d, "IPv6Addr", ip)}}
    if t == 23:
        fd = d["FlowDesc"]
        return {"t": t, "v": {"fd": None if fd.get_trans() else fd["Val"].get_val().decode()}}
    if t == 84:
        return {"t": t, "v": {"desc": d.to_bytes()[0], "teid": pc_opt(d, "TEID"),
                              "ipv4": pc_opt(d, "IPv4Addr", ip),
                              "ipv6": pc_opt(d, "IPv6Addr", ip)}}
    if t == 95:
        return {"t": t, "v": {"desc": d["Desc"].get_val()}}
    if t == 25:
        return {"t": t, "v": {"ul": d["ULGate"].get_val(), "dl": d["DLGate"].get_val()}}
    if t in (26, 27):
        return {"t": t, "v": {"ul": d["UL"].get_val(), "dl": d["DL"].get_val()}}
    if t in (31, 73):
        return {"t": t, "v": {"total": pc_opt(d, "Total"), "ul": pc_opt(d, "Uplink"),
                              "dl": pc_opt(d, "Downlink")}}
    if t == 66:
        return {"t": t, "v": {"total": pc_opt(d, "TotalVolume"),
                              "ul": pc_opt(d, "UplinkVolume"),
                              "dl": pc_opt(d, "DownlinkVolume")}}
    return {"t": t, "hex": d.to_bytes().hex()}


def pycrate_decode(b):
    m, code = pc.parse_PFCP(b)
    if m is None:
        return {"error": "parse_PFCP error code %d" % code, "code": code}
    h = m[0]
    fallbacks = []
    s = {"type": h["Type"].get_val(), "seid": None if h["SEID"].get_trans() else
         h["SEID"].get_val(), "seq": h["SeqNum"].get_val(),
         "ies": [pc_ie(i, fallbacks) for i in m[1]]}
    # parse_PFCP ignores bytes after the message; the message must cover the buffer.
    if len(m.to_bytes()) != len(b):
        return {"error": "pycrate consumed %d of %d octets" % (len(m.to_bytes()), len(b)),
                "code": code}
    return {"summary": s, "code": code, "raw_fallback": fallbacks}


def decode(item):
    b = bytes.fromhex(item["hex"])
    out = {"name": item["name"]}
    for lib, f in (("scapy", scapy_decode), ("pycrate", pycrate_decode)):
        try:
            r = f(b)
            out[lib] = r if "summary" in r or "error" in r else {"summary": r}
        except Exception as e:  # noqa: BLE001 - any decoder failure is a result to report
            out[lib] = {"error": "%s: %s" % (type(e).__name__, e)}
    return out


# ---------------------------------------------------------------------- scapy-built vectors ---

def scapy_vectors():
    S = sp
    node = S.IE_NodeId(id_type=0, ipv4="10.0.0.1")
    upf = S.IE_NodeId(id_type=2, id="upf.edge.lan")
    rts = S.IE_RecoveryTimeStamp(timestamp=3_900_000_000)
    cause = S.IE_Cause(cause=1)
    usage = lambda ie_cls: ie_cls(IE_list=[  # noqa: E731
        S.IE_URR_Id(id=1), S.IE_UR_SEQN(number=3),
        S.IE_UsageReportTrigger(VOLTH=1),
        S.IE_StartTime(timestamp=3_900_000_000), S.IE_EndTime(timestamp=3_900_000_060),
        S.IE_VolumeMeasurement(TOVOL=1, ULVOL=1, DLVOL=1, total=3000, uplink=1000,
                               downlink=2000),
        S.IE_DurationMeasurement(duration=60),
        S.IE_TimeOfFirstPacket(timestamp=3_900_000_001),
        S.IE_TimeOfLastPacket(timestamp=3_900_000_059)])
    create_pdrs = [
        S.IE_CreatePDR(IE_list=[
            S.IE_PDR_Id(id=1), S.IE_Precedence(precedence=255),
            S.IE_PDI(IE_list=[S.IE_SourceInterface(interface=0),
                              S.IE_FTEID(V4=1, CH=1, CHID=1, choose_id=1),
                              S.IE_NetworkInstance(instance="internet"),
                              S.IE_QFI(QFI=9)]),
            S.IE_OuterHeaderRemoval(header=0),
            S.IE_FAR_Id(id=1), S.IE_URR_Id(id=1), S.IE_QER_Id(id=1)]),
        S.IE_CreatePDR(IE_list=[
            S.IE_PDR_Id(id=2), S.IE_Precedence(precedence=254),
            S.IE_PDI(IE_list=[S.IE_SourceInterface(interface=1),
                              S.IE_UE_IP_Address(V4=1, SD=1, ipv4="10.45.0.2"),
                              S.IE_SDF_Filter(FD=1, flow_description=(
                                  "permit out 17 from 198.51.100.0/24 53 to assigned"))]),
            S.IE_FAR_Id(id=2), S.IE_QER_Id(id=1)]),
    ]
    create_fars = [
        S.IE_CreateFAR(IE_list=[S.IE_FAR_Id(id=1), S.IE_ApplyAction(FORW=1),
                                S.IE_ForwardingParameters(IE_list=[
                                    S.IE_DestinationInterface(interface=1)])]),
        S.IE_CreateFAR(IE_list=[S.IE_FAR_Id(id=2), S.IE_ApplyAction(FORW=1),
                                S.IE_ForwardingParameters(IE_list=[
                                    S.IE_DestinationInterface(interface=0),
                                    S.IE_OuterHeaderCreation(GTPUUDPIPV4=1, TEID=0x1000,
                                                             ipv4="192.168.1.5")])]),
        S.IE_CreateFAR(IE_list=[S.IE_FAR_Id(id=3), S.IE_ApplyAction(BUFF=1, NOCP=1),
                                S.IE_BAR_Id(id=1)]),
    ]
    create_urr = S.IE_CreateURR(IE_list=[
        S.IE_URR_Id(id=1), S.IE_MeasurementMethod(VOLUM=1, DURAT=1),
        S.IE_ReportingTriggers(volume_threshold=1, time_threshold=1),
        S.IE_VolumeThreshold(TOVOL=1, DLVOL=1, total=1_048_576, downlink=524_288),
        S.IE_TimeThreshold(threshold=3600)])
    create_qer = S.IE_CreateQER(IE_list=[
        S.IE_QER_Id(id=1), S.IE_GateStatus(ul="OPEN", dl="CLOSED"),
        S.IE_MBR(ul=100_000, dl=200_000), S.IE_GBR(ul=10_000, dl=20_000), S.IE_QFI(QFI=9)])
    create_bar = S.IE_Create_BAR(IE_list=[S.IE_BAR_Id(id=1)])

    msgs = [
        ("heartbeat_request", S.PFCP(S=0, seq=1) / S.PFCPHeartbeatRequest(IE_list=[rts])),
        ("heartbeat_response", S.PFCP(S=0, seq=1) / S.PFCPHeartbeatResponse(IE_list=[rts])),
        ("association_setup_request", S.PFCP(S=0, seq=2) / S.PFCPAssociationSetupRequest(
            IE_list=[node, rts, S.IE_CPFunctionFeatures(LOAD=1)])),
        ("association_setup_response", S.PFCP(S=0, seq=2) / S.PFCPAssociationSetupResponse(
            IE_list=[upf, cause, rts, S.IE_UPFunctionFeatures(FTUP=1, EMPU=1)])),
        ("association_update_request", S.PFCP(S=0, seq=3) / S.PFCPAssociationUpdateRequest(
            IE_list=[node, S.IE_CPFunctionFeatures(OVRL=1)])),
        ("association_update_response", S.PFCP(S=0, seq=3) /
         S.PFCPAssociationUpdateResponse(IE_list=[upf, cause])),
        ("association_release_request", S.PFCP(S=0, seq=4) /
         S.PFCPAssociationReleaseRequest(IE_list=[node])),
        ("association_release_response", S.PFCP(S=0, seq=4) /
         S.PFCPAssociationReleaseResponse(IE_list=[upf, cause])),
        ("session_establishment_request", S.PFCP(S=1, seid=0, seq=5) /
         S.PFCPSessionEstablishmentRequest(IE_list=[
             node, S.IE_FSEID(v4=1, seid=0x1122334455667788, ipv4="10.0.0.1"),
             *create_pdrs, *create_fars, create_urr, create_qer, create_bar])),
        ("session_establishment_response", S.PFCP(S=1, seid=0x1122334455667788, seq=5) /
         S.PFCPSessionEstablishmentResponse(IE_list=[
             upf, cause, S.IE_FSEID(v4=1, seid=0x42, ipv4="192.168.1.1"),
             S.IE_CreatedPDR(IE_list=[S.IE_PDR_Id(id=1),
                                      S.IE_FTEID(V4=1, TEID=0xabcdef, ipv4="192.168.1.1")])])),
        ("session_modification_request", S.PFCP(S=1, MP=1, priority=7, seid=0x42, seq=6) /
         S.PFCPSessionModificationRequest(IE_list=[
             S.IE_RemovePDR(IE_list=[S.IE_PDR_Id(id=2)]),
             S.IE_RemoveFAR(IE_list=[S.IE_FAR_Id(id=2)]),
             S.IE_RemoveURR(IE_list=[S.IE_URR_Id(id=9)]),
             S.IE_RemoveQER(IE_list=[S.IE_QER_Id(id=9)]),
             S.IE_UpdatePDR(IE_list=[S.IE_PDR_Id(id=1), S.IE_Precedence(precedence=100),
                                     S.IE_FAR_Id(id=3)]),
             S.IE_UpdateFAR(IE_list=[
                 S.IE_FAR_Id(id=1), S.IE_ApplyAction(FORW=1),
                 S.IE_UpdateForwardingParameters(IE_list=[
                     S.IE_DestinationInterface(interface=0),
                     S.IE_OuterHeaderCreation(GTPUUDPIPV4=1, TEID=0x2000,
                                              ipv4="192.168.1.6")])]),
             S.IE_UpdateURR(IE_list=[S.IE_URR_Id(id=1),
                                     S.IE_VolumeThreshold(TOVOL=1, total=2_000_000)]),
             S.IE_UpdateQER(IE_list=[S.IE_QER_Id(id=1), S.IE_MBR(ul=50_000, dl=60_000)]),
             S.IE_QueryURR(IE_list=[S.IE_URR_Id(id=1)])])),
        ("session_modification_response", S.PFCP(S=1, seid=0x1122334455667788, seq=6) /
         S.PFCPSessionModificationResponse(IE_list=[
             cause, usage(S.IE_UsageReport_SMR)])),
        ("session_deletion_request", S.PFCP(S=1, seid=0x42, seq=7) /
         S.PFCPSessionDeletionRequest()),
        ("session_deletion_response", S.PFCP(S=1, seid=0x1122334455667788, seq=7) /
         S.PFCPSessionDeletionResponse(IE_list=[cause, usage(S.IE_UsageReport_SDR)])),
        ("session_report_request", S.PFCP(S=1, seid=0x1122334455667788, seq=8) /
         S.PFCPSessionReportRequest(IE_list=[
             S.IE_ReportType(USAR=1, DLDR=1),
             S.IE_DownlinkDataReport(IE_list=[S.IE_PDR_Id(id=2)]),
             usage(S.IE_UsageReport_SRR)])),
        ("session_report_response", S.PFCP(S=1, seid=0x42, seq=8) /
         S.PFCPSessionReportResponse(IE_list=[
             cause, S.IE_UpdateBAR_SRR(IE_list=[S.IE_BAR_Id(id=1)])])),
        ("session_establishment_response_mandatory_ie_missing",
         S.PFCP(S=1, seid=0x1122334455667788, seq=9) /
         S.PFCPSessionEstablishmentResponse(IE_list=[
             upf, S.IE_Cause(cause=66), S.IE_OffendingIE(type=3)])),
    ]
    out = []
    for name, m in msgs:
        b = raw(m)
        out.append({"name": name, "lib": "scapy", "hex": b.hex(), "summary": scapy_decode(b)})
    return out


# -------------------------------------------------------------------- pycrate-built vectors ---

def ie(t, data):
    return {"Type": t, "Data": data}


def pycrate_vectors():
    ipv4 = lambda s: ipaddress.ip_address(s).packed  # noqa: E731
    node = ie(60, {"Type": 0, "Val": ipv4("10.0.0.2")})
    fqdn = ie(60, {"Type": 2, "Val": "smf.core.lan"})
    rts = ie(96, {"Val": 3_900_000_123})
    usage = lambda t: ie(t, [  # noqa: E731
        ie(81, {"Val": 7}), ie(104, 11), ie(63, [{"PERIO": 1}, {"TERMR": 1}]),
        ie(66, {"TOVOL": 1, "DLVOL": 1, "TotalVolume": 123_456, "DownlinkVolume": 100_000}),
        ie(67, {"Val": 30})])
    msgs = [
        ("heartbeat_request", pc.PFCPHeartbeatReq, {"SeqNum": 0x123456}, [rts]),
        ("association_setup_request", pc.PFCPAssociationSetupReq, {"SeqNum": 1},
         [fqdn, rts, ie(89, [{"LOAD": 1, "OVRL": 1}])]),
        ("association_setup_response", pc.PFCPAssociationSetupResp, {"SeqNum": 1},
         [node, ie(19, 1), rts, ie(43, [{"FTUP": 1}, {"EMPU": 1}])]),
        ("session_establishment_request", pc.PFCPSessionEstablishmentReq,
         {"SEID": 0, "SeqNum": 2}, [
             fqdn, ie(57, {"V4": 1, "V6": 1, "SEID": 0x99, "IPv4Addr": ipv4("10.0.0.2"),
                           "IPv6Addr": ipaddress.ip_address("2001:db8::2").packed}),
             ie(1, [ie(56, {"Val": 1}), ie(29, {"Val": 200}),
                    ie(2, [ie(20, {"If": 0}),
                           ie(21, {"CH": 1, "V4": 1}),
                           ie(93, {"V4": 1, "SD": 0, "IPv4Addr": ipv4("10.45.0.9")}),
                           ie(23, {"FD": 1, "FlowDesc": {"Val": b"permit out ip from any to assigned"}}),
                           ie(124, {"QFI": 5})]),
                    ie(95, {"Desc": 0}), ie(108, {"Val": 1}), ie(109, {"Val": 1})]),
             ie(3, [ie(108, {"Val": 1}), ie(44, [{"FORW": 1}]),
                    ie(4, [ie(42, {"Val": 1}), ie(22, b"internet")])]),
             ie(6, [ie(81, {"Val": 1}), ie(62, {"VOLUM": 1}),
                    ie(37, [{"VOLTH": 1}, {"VOLQU": 1}]),
                    ie(31, {"TOVOL": 1, "Total": 5_000_000}),
                    ie(73, {"TOVOL": 1, "Total": 9_000_000})]),
             ie(7, [ie(109, {"Val": 1}), ie(25, {"ULGate": 0, "DLGate": 0}),
                    ie(26, {"UL": 1_000_000, "DL": 2_000_000}), ie(124, {"QFI": 5})])]),
        ("session_modification_response", pc.PFCPSessionModificationResp,
         {"SEID": 0x99, "SeqNum": 3}, [ie(19, 1), usage(78)]),
        ("session_report_request", pc.PFCPSessionReportReq, {"SEID": 0x99, "SeqNum": 4},
         [ie(39, {"USAR": 1}), usage(80)]),
        ("session_deletion_response", pc.PFCPSessionDeletionResp, {"SEID": 0x99, "SeqNum": 5},
         [ie(19, 65), ie(40, 57)]),
    ]
    out = []
    for name, cls, hdr, ies in msgs:
        m = cls()
        m[0].set_val(hdr)
        m[1].set_val(ies)
        b = m.to_bytes()
        r = pycrate_decode(b)
        if "error" in r or r["code"] or r["raw_fallback"]:
            raise SystemExit("pycrate cannot decode its own %s: %s" % (name, r))
        out.append({"name": name, "lib": "pycrate", "hex": b.hex(), "summary": r["summary"]})
    return out


def main():
    if sys.argv[1:] == ["generate"]:
        json.dump(scapy_vectors() + pycrate_vectors(), sys.stdout)
    elif sys.argv[1:] == ["decode"]:
        json.dump([decode(i) for i in json.load(sys.stdin)], sys.stdout)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
