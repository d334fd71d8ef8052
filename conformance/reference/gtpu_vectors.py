#!/usr/bin/env python3
"""GTP-U (TS 29.281) reference vectors from two independent implementations, scapy
(scapy.contrib.gtp) and pycrate (pycrate_mobile.TS29281_GTPU), for the outpost-gtpu interop
tests (nfv/gtpu/tests/interop.rs).

    gtpu_vectors.py generate      # prints [{"name", "lib", "hex", "summary"}]
    gtpu_vectors.py decode < IN   # IN: [{"name", "hex"}]; prints
                                  # [{"name", "scapy": {...}, "pycrate": {...}}]

A library's result is {"summary": S} or {"error": "..."}. The summary S is the shape the Rust
test computes:
    {"type": int, "teid": int, "seq": int|null, "npdu": int|null,
     "exts": [{"t": 133, "pdu_type", "qfi", "rqi", "ppi"} | {"t": 64, "port"}
              | {"t": 192, "pdcp"} | {"t": type, "hex": content}],
     "body": {"tpdu": hex} | {"recovery": n} | {"teid_data_i": n, "peer": addr}
             | {"types": [...]} | {}}

Known deviation: scapy 2.8.0 gives the Extension Header Type List IE (141) a 2-octet length,
while TS 29.281 clause 8.5 (and pycrate, and Wireshark) use one octet; scapy vectors for the
Supported Extension Headers Notification therefore carry the IE as raw octets.
"""

import ipaddress
import json
import sys

from scapy.all import IP, ICMP, Raw, raw
from scapy.contrib import gtp as sg
import pycrate_mobile.TS29281_GTPU as pg


def ext_summary(kind, content):
    """Semantic summary of an extension header from its content octets."""
    if kind == 0x85:
        pdu_type = content[0] >> 4
        dl = pdu_type == 0
        return {"t": kind, "pdu_type": pdu_type, "qfi": content[1] & 0x3f,
                "rqi": (content[1] >> 6) & 1 if dl else None,
                "ppi": content[2] >> 5 if dl and content[1] & 0x80 else None}
    if kind == 0x40:
        return {"t": kind, "port": int.from_bytes(content[:2], "big")}
    if kind == 0xc0:
        return {"t": kind, "pdcp": int.from_bytes(content[:2], "big")}
    return {"t": kind, "hex": bytes(content).hex()}


# ---------------------------------------------------------------------------------- scapy ---

def scapy_decode(b):
    h = sg.GTP_U_Header(b)
    opt = h.E or h.S or h.PN
    s = {"type": h.gtp_type, "teid": h.teid, "seq": h.seq if h.S else None,
         "npdu": h.npdu if h.PN else None, "exts": [], "body": {}}
    layer = h.payload
    kind = h.next_ex if h.E else 0
    while kind:
        if isinstance(layer, sg.GTPPDUSessionContainer):
            info = {"t": kind, "pdu_type": layer.type, "qfi": layer.QFI,
                    "rqi": layer.RQI if layer.type == 0 else None,
                    "ppi": layer.PPI if layer.type == 0 and layer.PPP else None}
            s["exts"].append(info)
            kind = layer.NextExtHdr
        elif isinstance(layer, sg.GTP_UDPPort_ExtensionHeader):
            s["exts"].append({"t": kind, "port": layer.udp_port})
            kind = layer.next_ex
        elif isinstance(layer, sg.GTP_PDCP_PDU_ExtensionHeader):
            s["exts"].append({"t": kind, "pdcp": layer.pdcp_pdu})
            kind = layer.next_ex
        else:
            raise ValueError("scapy has no layer for extension header %#x" % kind)
        layer = layer.payload
    body = raw(layer)
    t = h.gtp_type
    if t == 255:
        s["body"] = {"tpdu": body.hex()}
    elif t in (2, 26, 31):
        cls = {2: sg.GTPEchoResponse, 26: sg.GTPErrorIndication,
               31: sg.GTPSupportedExtensionHeadersNotification}[t]
        # After an extension header scapy leaves the IEs raw; dissect them with the class
        # scapy binds to this message type.
        msg = layer if isinstance(layer, cls) else cls(body)
        for ie in msg.IE_list:
            if isinstance(ie, sg.IE_Recovery):
                s["body"]["recovery"] = ie.restart_counter
            elif isinstance(ie, sg.IE_TEIDI):
                s["body"]["teid_data_i"] = ie.TEIDI
            elif isinstance(ie, sg.IE_GSNAddress):
                s["body"]["peer"] = ie.ipv4_address if ie.length == 4 else \
                    str(ipaddress.ip_address(ie.ipv6_address))
            elif isinstance(ie, sg.IE_ExtensionHeaderList):
                s["body"]["types"] = list(ie.extension_headers)
    return s


# -------------------------------------------------------------------------------- pycrate ---

def pycrate_decode(b):
    m, code = pg.parse_GTPU(b)
    if m is None:
        return {"error": "parse_GTPU error code %d" % code}
    h = m[0]
    e, sf, pn = h["E"].get_val(), h["S"].get_val(), h["PN"].get_val()
    opt = h["GTPUHdrOpt"]
    s = {"type": h["Type"].get_val(), "teid": h["TEID"].get_val(),
         "seq": opt["SeqNum"].get_val() if sf else None,
         "npdu": opt["NPDUNum"].get_val() if pn else None, "exts": [], "body": {}}
    if e:
        kind = opt["NextExt"].get_val()
        for ext in h["GTPUHdrExtList"]:
            content = ext[1]
            if kind == 0x85:
                t = content["Type"].get_val()
                info = content["Info"].get_alt()
                s["exts"].append({"t": kind, "pdu_type": t, "qfi": info["QFI"].get_val(),
                                  "rqi": info["RQI"].get_val() if t == 0 else None,
                                  "ppi": info["PPI"].get_val() if t == 0 and
                                  info["PPP"].get_val() else None})
            elif kind == 0x40:
                s["exts"].append({"t": kind, "port": content["Value"].get_val()})
            elif kind == 0xc0:
                s["exts"].append({"t": kind, "pdcp": int.from_bytes(content.to_bytes()[:2],
                                                                    "big")})
            else:
                s["exts"].append({"t": kind, "hex": content.to_bytes().hex()})
            kind = ext["NextExt"].get_val()
    t = s["type"]
    if t == 255:
        s["body"] = {"tpdu": m["TPDU"].to_bytes().hex()}
    elif t == 2:
        s["body"] = {"recovery": m[1]["RestartCounter"].get_val()}
    elif t == 26:
        s["body"] = {"teid_data_i": m[1]["TEID"].get_val(),
                     "peer": str(ipaddress.ip_address(m[2]["IP"].get_val()))}
    elif t == 31:
        s["body"] = {"types": [x.get_val() for x in m[1]["SupportedExtHdr"]]}
    if len(m.to_bytes()) != len(b):
        return {"error": "pycrate consumed %d of %d octets" % (len(m.to_bytes()), len(b))}
    return s


def decode(item):
    b = bytes.fromhex(item["hex"])
    out = {"name": item["name"]}
    for lib, f in (("scapy", scapy_decode), ("pycrate", pycrate_decode)):
        try:
            r = f(b)
            out[lib] = r if "error" in r else {"summary": r}
        except Exception as e:  # noqa: BLE001 - any decoder failure is a result to report
            out[lib] = {"error": "%s: %s" % (type(e).__name__, e)}
    return out


# ----------------------------------------------------------------------------- generation ---

def ping():
    return IP(src="10.45.0.2", dst="198.51.100.7", id=1) / ICMP(id=7, seq=1) / Raw(b"outpost")


def scapy_vectors():
    U = sg.GTP_U_Header
    msgs = [
        ("gpdu", U(teid=0x1234) / ping()),
        ("gpdu_with_sequence", U(teid=0x1234, S=1, seq=0xbeef) / ping()),
        ("gpdu_uplink_qfi", U(teid=1, E=1, next_ex=0x85) /
         sg.GTPPDUSessionContainer(type=1, QFI=9) / ping()),
        ("gpdu_downlink_qfi_rqi_ppi", U(teid=0xdeadbeef, E=1, next_ex=0x85) /
         sg.GTPPDUSessionContainer(type=0, RQI=1, QFI=5, PPP=1, PPI=3) / ping()),
        ("echo_request", U(gtp_type=1, S=1, seq=17) / sg.GTPEchoRequest()),
        ("echo_response", U(gtp_type=2, S=1, seq=17) /
         sg.GTPEchoResponse(IE_list=[sg.IE_Recovery(restart_counter=0)])),
        ("error_indication", U(gtp_type=26, S=1, seq=3) / sg.GTPErrorIndication(IE_list=[
            sg.IE_TEIDI(TEIDI=0x0102_0304), sg.IE_GSNAddress(length=4, ipv4_address="10.45.0.1")])),
        ("error_indication_udp_port", U(gtp_type=26, S=1, seq=4, E=1, next_ex=0x40) /
         sg.GTP_UDPPort_ExtensionHeader(udp_port=2152, next_ex=0) /
         Raw(raw(sg.IE_TEIDI(TEIDI=0x0a0b0c0d)) +
             raw(sg.IE_GSNAddress(ipv6_address="2001:db8::1", length=16)))),
        ("end_marker", U(gtp_type=254, teid=0x1234)),
        # IE 141 as raw octets, see the module docstring.
        ("supported_extension_headers_notification", U(gtp_type=31, S=1, seq=5) /
         Raw(bytes([141, 2, 0x40, 0x85]))),
    ]
    out = []
    for name, m in msgs:
        b = raw(m)
        s = scapy_decode(b)
        if name == "supported_extension_headers_notification":
            s["body"] = {"types": [0x40, 0x85]}
        out.append({"name": name, "lib": "scapy", "hex": b.hex(), "summary": s})
    return out


def pycrate_vectors():
    tpdu = raw(ping())
    hdr = lambda **kw: dict(kw)  # noqa: E731
    msgs = [
        ("gpdu_downlink_qfi", pg.GPDU, {
            # NextExt first: pycrate picks an extension header's content class from it.
            "GTPUHdr": hdr(E=1, TEID=0x55, GTPUHdrOpt={"NextExt": 0x85},
                           GTPUHdrExtList=[{"PDUSessionContainer": {
                "Type": 0, "Info": {"QFI": 7, "RQI": 0}}}]),
            "TPDU": tpdu}),
        ("echo_response", pg.GTPUEchoResp, {
            "GTPUHdr": hdr(S=1, GTPUHdrOpt={"SeqNum": 99}),
            "GTPUIERecovery": {"RestartCounter": 0}}),
        ("error_indication", pg.GTPUErrorInd, {
            "GTPUHdr": hdr(S=1, GTPUHdrOpt={"SeqNum": 1}),
            "GTPUIETEID": {"TEID": 0x0102_0304},
            "GTPUIEPeerAddr": {"IP": bytes([192, 168, 1, 5])}}),
        ("supported_extension_headers_notification", pg.GTPUSuppExtHdrNotif, {
            "GTPUHdr": hdr(S=1, GTPUHdrOpt={"SeqNum": 2}),
            "GTPUIEExtHdrList": {"SupportedExtHdr": [0x40, 0x85]}}),
        ("end_marker", pg.GTPUEndMarker, {"GTPUHdr": hdr(TEID=0x77)}),
    ]
    out = []
    for name, cls, val in msgs:
        m = cls(val=val)
        b = m.to_bytes()
        s = pycrate_decode(b)
        if "error" in s:
            raise SystemExit("pycrate cannot decode its own %s: %s" % (name, s))
        out.append({"name": name, "lib": "pycrate", "hex": b.hex(), "summary": s})
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
