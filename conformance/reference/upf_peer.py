#!/usr/bin/env python3
"""An SMF and a traffic generator, built on scapy, that drive a UPF end to end.

Usage (as root; the network namespaces come from the Rust test):

    upf_peer.py run --upf 127.0.0.1:8805 --gnb-ns NS --dn-ns NS --sessions N [--packets K]

prints one JSON object with what each step saw. The SMF side runs in the calling namespace
and speaks PFCP over UDP to --upf. Traffic runs in the namespaces through plain UDP sockets
(the kernels there resolve the UPF's addresses with ARP): the gNB side sends GTP-U uplink
from 10.0.1.2:2152 to the UPF's N3 address 10.0.1.1 and receives downlink; the DN side
(10.0.2.2) receives the decapsulated uplink on UDP 9000 and sends downlink to the UEs
(10.45.0.0/16, routed via the UPF's N6 address 10.0.2.1).

Nothing here knows the UPF's internals: every message is built from TS 29.244 / 29.281 with
scapy's own layers, and every answer is decoded with them.

Internal subcommands (run inside a namespace by `run`): gnb, dn.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from scapy.all import IP, UDP, Raw  # noqa: E402
from scapy.contrib import pfcp as P  # noqa: E402
from scapy.contrib.gtp import GTP_U_Header, GTPEchoRequest  # noqa: E402

N3_UPF = "10.0.1.1"
GNB = "10.0.1.2"
N6_UPF = "10.0.2.1"
DN = "10.0.2.2"
SMF_NODE = "10.0.9.9"
GTPU = 2152
DN_PORT = 9000
UE_PORT = 7000


def ue_ip(i: int) -> str:
    return f"10.45.{i // 250}.{i % 250 + 1}"


def gnb_teid(i: int) -> int:
    return 0x10000 + i


# ---------------------------------------------------------------------------------------
# Traffic, inside the namespaces.


def uplink_packet(teid: int, i: int, k: int) -> bytes:
    inner = IP(src=ue_ip(i), dst=DN) / UDP(sport=UE_PORT, dport=DN_PORT) / Raw(f"ul-{i}-{k}".encode())
    return bytes(GTP_U_Header(teid=teid, gtp_type=255) / inner)


def signal_ready(path: str | None) -> None:
    if path:
        open(path, "w").close()


def wait_ready(path: str, timeout: float = 30.0) -> None:
    until = time.time() + timeout
    while not os.path.exists(path):
        if time.time() > until:
            raise RuntimeError(f"traffic helper never got ready ({path})")
        time.sleep(0.02)
    os.unlink(path)


def split_gtpu(data: bytes):
    """(message type, TEID, QFI of a PDU Session Container or None, T-PDU) of a GTP-U packet,
    walking the extension header chain by TS 29.281 section 5.2 (scapy stops at the first
    extension header it does not model)."""
    flags, mtype = data[0], data[1]
    teid = int.from_bytes(data[4:8], "big")
    off, qfi = 8, None
    if flags & 0x07:
        off = 12
        nxt = data[11] if flags & 0x04 else 0
        while nxt:
            length = data[off] * 4
            if nxt == 0x85:
                qfi = data[off + 2] & 0x3F
            nxt = data[off + length - 1]
            off += length
    return mtype, teid, qfi, data[off:]


def cmd_gnb(args: argparse.Namespace) -> int:
    """Sends uplink G-PDUs (and an echo request and one unknown TEID), then collects what
    comes back on 2152 for --wait seconds."""
    teids = json.loads(args.teids)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((GNB, GTPU))
    s.settimeout(0.2)
    signal_ready(args.ready_file)
    sent_inner = 0
    if args.echo:
        s.sendto(bytes(GTP_U_Header(gtp_type=1, S=1, seq=7) / GTPEchoRequest()), (N3_UPF, GTPU))
    if args.unknown_teid:
        s.sendto(uplink_packet(0xDEADBEEF, 0, 0), (N3_UPF, GTPU))
    for i, teid in enumerate(teids):
        for k in range(args.packets):
            pkt = uplink_packet(teid, i, k)
            s.sendto(pkt, (N3_UPF, GTPU))
            sent_inner += len(GTP_U_Header(pkt).payload)
            time.sleep(0.001)
    got = []
    deadline = time.time() + args.wait
    while time.time() < deadline and len(got) < args.expect:
        try:
            data, frm = s.recvfrom(65535)
        except socket.timeout:
            continue
        mtype, teid, qfi, body = split_gtpu(data)
        entry = {"from": f"{frm[0]}:{frm[1]}", "type": mtype, "teid": teid, "qfi": qfi}
        if mtype == 255:
            inner = IP(body)
            udp = inner.getlayer(UDP)
            entry.update(
                {
                    "inner_src": inner.src,
                    "inner_dst": inner.dst,
                    "payload": bytes(udp.payload).decode(errors="replace") if udp else None,
                }
            )
        got.append(entry)
    print(json.dumps({"sent_inner_bytes": sent_inner, "received": got}))
    return 0


def cmd_dn(args: argparse.Namespace) -> int:
    """Receives uplink on DN:9000 until --expect arrive (or --wait), then sends --downlink
    packets to each UE."""
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.bind((DN, DN_PORT))
    r.settimeout(0.2)
    signal_ready(args.ready_file)
    got = []
    deadline = time.time() + args.wait
    while time.time() < deadline and len(got) < args.expect:
        try:
            data, frm = r.recvfrom(65535)
        except socket.timeout:
            continue
        got.append({"from": f"{frm[0]}:{frm[1]}", "payload": data.decode(errors="replace")})
    if args.start_file:
        # Wait until the gNB side is listening before sending downlink.
        until = time.time() + args.wait
        while not os.path.exists(args.start_file) and time.time() < until:
            time.sleep(0.02)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent_ip = 0
    for i in range(args.sessions):
        for k in range(args.downlink):
            payload = f"dl-{i}-{k}".encode()
            s.sendto(payload, (ue_ip(i), UE_PORT))
            sent_ip += 20 + 8 + len(payload)
            time.sleep(0.001)
    print(json.dumps({"received": got, "sent_ip_bytes": sent_ip}))
    return 0


# ---------------------------------------------------------------------------------------
# The SMF.


class Smf:
    def __init__(self, upf: str):
        host, port = upf.rsplit(":", 1)
        self.upf = (host, int(port))
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.seq = 1
        self.reports: list[dict] = []

    def request(self, body, seid: int | None = None, timeout: float = 5.0):
        seq = self.seq
        self.seq += 1
        hdr = P.PFCP(version=1, S=1 if seid is not None else 0, seid=seid or 0, seq=seq)
        self.sock.sendto(bytes(hdr / body), self.upf)
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data, frm = self.sock.recvfrom(65535)
            except socket.timeout:
                break
            msg = P.PFCP(data)
            if msg.message_type == 56:  # Session Report Request, unsolicited
                self.on_report(msg, frm)
                continue
            if msg.seq == seq:
                return msg
        raise RuntimeError(f"no answer to {body.name} (seq {seq})")

    def probe(self, raw: bytes, timeout: float = 5.0) -> dict:
        """Sends `raw`, then a Heartbeat Request, and reads answers up to the heartbeat's;
        returns the first of them (unsolicited reports aside): its message type, sequence
        number, Cause and Offending IE."""
        hb_seq = self.seq
        self.seq += 1
        heartbeat = P.PFCP(version=1, S=0, seq=hb_seq) / P.PFCPHeartbeatRequest(
            IE_list=[P.IE_RecoveryTimeStamp(timestamp=3900000000)]
        )
        self.sock.sendto(raw, self.upf)
        self.sock.sendto(bytes(heartbeat), self.upf)
        first = None
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data, frm = self.sock.recvfrom(65535)
            except socket.timeout:
                break
            msg = P.PFCP(data)
            if msg.message_type == 56:
                self.on_report(msg, frm)
                continue
            if first is None:
                offending = None
                for ie in msg.payload.IE_list:
                    if isinstance(ie, P.IE_OffendingIE):
                        offending = ie.type
                first = {
                    "type": msg.message_type,
                    "seq": msg.seq,
                    "cause": cause_of(msg),
                    "offending_ie": offending,
                    "heartbeat_seq": hb_seq,
                }
            if msg.message_type == 2 and msg.seq == hb_seq:
                return first
        raise RuntimeError(f"no answer to the heartbeat after the probe (seq {hb_seq})")

    def on_report(self, msg, frm) -> None:
        req = msg.payload
        entry = {"seid": msg.seid, "usage": []}
        for ie in req.IE_list:
            if isinstance(ie, P.IE_ReportType):
                entry["usar"] = bool(ie.USAR)
            if isinstance(ie, P.IE_UsageReport_SRR):
                entry["usage"].append(usage(ie))
        self.reports.append(entry)
        resp = P.PFCP(version=1, S=1, seid=msg.seid, seq=msg.seq) / P.PFCPSessionReportResponse(
            IE_list=[P.IE_Cause(cause=1)]
        )
        self.sock.sendto(bytes(resp), frm)

    def drain_reports(self, seconds: float) -> None:
        deadline = time.time() + seconds
        while time.time() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.time()))
            try:
                data, frm = self.sock.recvfrom(65535)
            except socket.timeout:
                return
            msg = P.PFCP(data)
            if msg.message_type == 56:
                self.on_report(msg, frm)


def usage(ie) -> dict:
    out = {}
    for sub in ie.IE_list:
        if isinstance(sub, P.IE_URR_Id):
            out["urr"] = sub.id
        if isinstance(sub, P.IE_VolumeMeasurement):
            out["total"] = sub.total if sub.TOVOL else None
            out["uplink"] = sub.uplink if sub.ULVOL else None
            out["downlink"] = sub.downlink if sub.DLVOL else None
        if isinstance(sub, P.IE_UsageReportTrigger):
            out["volth"] = bool(sub.VOLTH)
            out["termr"] = bool(sub.TERMR)
    return out


def cause_of(msg) -> int | None:
    for ie in msg.payload.IE_list:
        if isinstance(ie, P.IE_Cause):
            return ie.cause
    return None


def establishment(i: int, volume_threshold: int):
    node = P.IE_NodeId(id_type=0, ipv4=SMF_NODE)
    fseid = P.IE_FSEID(v4=1, seid=0x5000 + i, ipv4=SMF_NODE)
    uplink = P.IE_CreatePDR(
        IE_list=[
            P.IE_PDR_Id(id=1),
            P.IE_Precedence(precedence=100),
            P.IE_PDI(
                IE_list=[
                    P.IE_SourceInterface(interface=0),
                    P.IE_FTEID(V4=1, CH=1, CHID=1, choose_id=1),
                    P.IE_UE_IP_Address(V4=1, SD=0, ipv4=ue_ip(i)),
                ]
            ),
            P.IE_OuterHeaderRemoval(header=0),
            P.IE_FAR_Id(id=1),
            P.IE_URR_Id(id=1),
            P.IE_QER_Id(id=1),
        ]
    )
    downlink = P.IE_CreatePDR(
        IE_list=[
            P.IE_PDR_Id(id=2),
            P.IE_Precedence(precedence=100),
            P.IE_PDI(
                IE_list=[
                    P.IE_SourceInterface(interface=1),
                    P.IE_UE_IP_Address(V4=1, SD=1, ipv4=ue_ip(i)),
                ]
            ),
            P.IE_FAR_Id(id=2),
            P.IE_URR_Id(id=1),
            P.IE_QER_Id(id=1),
        ]
    )
    far_ul = P.IE_CreateFAR(
        IE_list=[
            P.IE_FAR_Id(id=1),
            P.IE_ApplyAction(FORW=1),
            P.IE_ForwardingParameters(IE_list=[P.IE_DestinationInterface(interface=1)]),
        ]
    )
    far_dl = P.IE_CreateFAR(
        IE_list=[
            P.IE_FAR_Id(id=2),
            P.IE_ApplyAction(FORW=1),
            P.IE_ForwardingParameters(
                IE_list=[
                    P.IE_DestinationInterface(interface=0),
                    P.IE_OuterHeaderCreation(GTPUUDPIPV4=1, TEID=gnb_teid(i), ipv4=GNB),
                ]
            ),
        ]
    )
    qer = P.IE_CreateQER(
        IE_list=[
            P.IE_QER_Id(id=1),
            P.IE_GateStatus(ul=0, dl=0),
            P.IE_MBR(ul=100000, dl=100000),
            P.IE_QFI(QFI=9),
        ]
    )
    urr = P.IE_CreateURR(
        IE_list=[
            P.IE_URR_Id(id=1),
            P.IE_MeasurementMethod(VOLUM=1),
            P.IE_ReportingTriggers(volume_threshold=1),
            P.IE_VolumeThreshold(TOVOL=1, total=volume_threshold),
        ]
    )
    return P.PFCPSessionEstablishmentRequest(
        IE_list=[node, fseid, uplink, downlink, far_ul, far_dl, qer, urr]
    )


def run_in(ns: str, *argv: str) -> subprocess.Popen:
    """Starts a traffic helper in `ns` and returns once its socket is bound."""
    ready = f"/tmp/upf-peer-{os.getpid()}-{time.monotonic_ns()}.ready"
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__), *argv,
         "--ready-file", ready],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_ready(ready)
    return p


def finish(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=120)
    if p.returncode != 0:
        raise RuntimeError(f"traffic helper failed: {err}")
    return json.loads(out)


def cmd_run(args: argparse.Namespace) -> int:
    smf = Smf(args.upf)
    report: dict = {}

    # Requests before an association are refused.
    early = smf.request(establishment(0, 10**9), seid=0)
    report["establishment_without_association_cause"] = cause_of(early)

    resp = smf.request(
        P.PFCPAssociationSetupRequest(
            IE_list=[P.IE_NodeId(id_type=0, ipv4=SMF_NODE), P.IE_RecoveryTimeStamp(timestamp=3900000000)]
        )
    )
    report["association_cause"] = cause_of(resp)
    report["association_response_type"] = resp.message_type
    for ie in resp.payload.IE_list:
        if isinstance(ie, P.IE_NodeId):
            report["upf_node_id"] = ie.ipv4
        if isinstance(ie, P.IE_UPFunctionFeatures):
            report["up_features_present"] = True

    hb = smf.request(P.PFCPHeartbeatRequest(IE_list=[P.IE_RecoveryTimeStamp(timestamp=3900000000)]))
    report["heartbeat_response_type"] = hb.message_type

    # Sessions; session 0 gets a small volume threshold so the UPF reports usage.
    sessions = []
    for i in range(args.sessions):
        threshold = args.threshold if i == 0 else 10**9
        resp = smf.request(establishment(i, threshold), seid=0)
        s = {"i": i, "cause": cause_of(resp)}
        for ie in resp.payload.IE_list:
            if isinstance(ie, P.IE_FSEID):
                s["up_seid"] = ie.seid
            if isinstance(ie, P.IE_CreatedPDR):
                for sub in ie.IE_list:
                    if isinstance(sub, P.IE_FTEID):
                        s["teid"] = sub.TEID
                        s["teid_ipv4"] = sub.ipv4
        sessions.append(s)
    report["sessions"] = sessions
    teids = [s.get("teid", 0) for s in sessions]

    # Traffic: uplink through the UPF to the DN, then downlink back to the gNB.
    start_file = f"/tmp/upf-peer-{os.getpid()}.go"
    dn = run_in(
        args.dn_ns, "dn", "--expect", str(args.sessions * args.packets), "--wait", "20",
        "--sessions", str(args.sessions), "--downlink", str(args.packets), "--start-file", start_file,
    )
    expect_back = args.sessions * args.packets + 2  # downlink + echo response + error indication
    gnb = run_in(
        args.gnb_ns, "gnb", "--teids", json.dumps(teids), "--packets", str(args.packets),
        "--expect", str(expect_back), "--wait", "20", "--echo", "--unknown-teid",
    )
    open(start_file, "w").close()
    report["gnb"] = finish(gnb)
    report["dn"] = finish(dn)
    os.unlink(start_file)
    smf.drain_reports(1.0)

    # Path switch for session 0: the downlink FAR moves to a new TEID; the UPF sends an End
    # Marker on the old tunnel.
    if sessions and "up_seid" in sessions[0]:
        # The gNB listens first: the end marker leaves with the modification's answer.
        gnb2 = run_in(args.gnb_ns, "gnb", "--teids", "[]", "--packets", "0", "--expect", "2", "--wait", "5")
        mod = smf.request(
            P.PFCPSessionModificationRequest(
                IE_list=[
                    P.IE_UpdateFAR(
                        IE_list=[
                            P.IE_FAR_Id(id=2),
                            P.IE_ApplyAction(FORW=1),
                            P.IE_UpdateForwardingParameters(
                                IE_list=[
                                    P.IE_DestinationInterface(interface=0),
                                    P.IE_OuterHeaderCreation(GTPUUDPIPV4=1, TEID=0x20000, ipv4=GNB),
                                ]
                            ),
                        ]
                    )
                ]
            ),
            seid=sessions[0]["up_seid"],
        )
        report["modification_cause"] = cause_of(mod)
        dn2 = run_in(args.dn_ns, "dn", "--expect", "0", "--wait", "0", "--sessions", "1", "--downlink", "1")
        report["after_switch_dn"] = finish(dn2)
        report["after_switch"] = finish(gnb2)

    # Unknown session.
    unknown = smf.request(P.PFCPSessionDeletionRequest(), seid=0xFFFF_FFFF)
    report["unknown_session_cause"] = cause_of(unknown)

    # Deletion: usage reports with what was counted.
    deletions = []
    for s in sessions:
        if "up_seid" not in s:
            continue
        resp = smf.request(P.PFCPSessionDeletionRequest(), seid=s["up_seid"])
        d = {"i": s["i"], "cause": cause_of(resp), "usage": []}
        for ie in resp.payload.IE_list:
            if isinstance(ie, P.IE_UsageReport_SDR):
                d["usage"].append(usage(ie))
        deletions.append(d)
    report["deletions"] = deletions
    report["session_reports"] = smf.reports
    # Malformed messages (TS 29.244 clause 7.6), each followed by a Heartbeat Request: the UPF
    # answers datagrams in order, so the first answer after the probe tells whether the probe
    # was answered or silently discarded, without waiting for a silence to time out.
    full = bytes(P.PFCP(version=1, S=1, seid=0, seq=999) / establishment(0, 1))
    # Header intact, body cut short, length field unchanged (larger than the datagram): a
    # Response with Cause "Invalid Length" (clause 7.6.3).
    report["truncated_answer"] = smf.probe(full[:40])
    # Cut at an IE boundary with a consistent length: only the Node ID is left, so the mandatory
    # CP F-SEID, Create PDR and Create FAR are missing: "Mandatory IE missing" with the Offending
    # IE (clause 7.6.4.1).
    node_only = P.PFCPSessionEstablishmentRequest(IE_list=[P.IE_NodeId(id_type=0, ipv4=SMF_NODE)])
    report["missing_ie_answer"] = smf.probe(bytes(P.PFCP(version=1, S=1, seid=0, seq=998) / node_only))
    # Too short to hold its own header (a session message's is 16 octets): silently discarded
    # (clause 7.6.3).
    report["runt_answer"] = smf.probe(full[:10])
    print(json.dumps(report))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--upf", required=True)
    r.add_argument("--gnb-ns", required=True)
    r.add_argument("--dn-ns", required=True)
    r.add_argument("--sessions", type=int, default=4)
    r.add_argument("--packets", type=int, default=5)
    r.add_argument("--threshold", type=int, default=300)
    g = sub.add_parser("gnb")
    g.add_argument("--teids", required=True)
    g.add_argument("--packets", type=int, default=5)
    g.add_argument("--expect", type=int, default=0)
    g.add_argument("--wait", type=float, default=5)
    g.add_argument("--echo", action="store_true")
    g.add_argument("--unknown-teid", action="store_true")
    g.add_argument("--ready-file", default=None)
    d = sub.add_parser("dn")
    d.add_argument("--expect", type=int, default=0)
    d.add_argument("--wait", type=float, default=5)
    d.add_argument("--sessions", type=int, default=1)
    d.add_argument("--downlink", type=int, default=0)
    d.add_argument("--start-file", default=None)
    d.add_argument("--ready-file", default=None)
    args = ap.parse_args()
    return {"run": cmd_run, "gnb": cmd_gnb, "dn": cmd_dn}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
