//! PFCP messages (TS 29.244 clauses 7.4 and 7.5): node-related and session-related.

use alloc::vec::Vec;

use crate::grouped::{
    CreateBar, CreateFar, CreatePdr, CreateQer, CreateUrr, CreatedPdr, DownlinkDataReport,
    ErrorIndicationReport, QueryUrr, RemoveBar, RemoveFar, RemovePdr, RemoveQer, RemoveUrr,
    UpdateBar, UpdateBarReportResponse, UpdateFar, UpdatePdr, UpdateQer, UpdateUrr, UsageReport,
};
use crate::header::{Header, Packet, message_type};
use crate::ie::{IeValue, Writer, ie_group, ie_type};
use crate::types::{
    Cause, CpFunctionFeatures, FSeid, FailedRuleId, NodeId, ReportType, UpFunctionFeatures,
};
use crate::{Error, Result};

ie_group! {
    /// Heartbeat Request (1).
    pub struct HeartbeatRequest {
        /// Recovery Time Stamp (M), NTP seconds of the sender's last start.
        recovery_time_stamp: mandatory u32 = ie_type::RECOVERY_TIME_STAMP,
    }
}

ie_group! {
    /// Heartbeat Response (2).
    pub struct HeartbeatResponse {
        /// Recovery Time Stamp (M).
        recovery_time_stamp: mandatory u32 = ie_type::RECOVERY_TIME_STAMP,
    }
}

ie_group! {
    /// Association Setup Request (5).
    pub struct AssociationSetupRequest<'a> {
        /// Node ID (M).
        node_id: mandatory NodeId<'a> = ie_type::NODE_ID,
        /// Recovery Time Stamp (M).
        recovery_time_stamp: mandatory u32 = ie_type::RECOVERY_TIME_STAMP,
        /// UP Function Features (sent by a UP function).
        up_function_features: optional UpFunctionFeatures = ie_type::UP_FUNCTION_FEATURES,
        /// CP Function Features (sent by a CP function).
        cp_function_features: optional CpFunctionFeatures = ie_type::CP_FUNCTION_FEATURES,
    }
}

ie_group! {
    /// Association Setup Response (6).
    pub struct AssociationSetupResponse<'a> {
        /// Node ID (M).
        node_id: mandatory NodeId<'a> = ie_type::NODE_ID,
        /// Cause (M).
        cause: mandatory Cause = ie_type::CAUSE,
        /// Recovery Time Stamp (M).
        recovery_time_stamp: mandatory u32 = ie_type::RECOVERY_TIME_STAMP,
        /// UP Function Features.
        up_function_features: optional UpFunctionFeatures = ie_type::UP_FUNCTION_FEATURES,
        /// CP Function Features.
        cp_function_features: optional CpFunctionFeatures = ie_type::CP_FUNCTION_FEATURES,
    }
}

ie_group! {
    /// Association Update Request (7).
    pub struct AssociationUpdateRequest<'a> {
        /// Node ID (M).
        node_id: mandatory NodeId<'a> = ie_type::NODE_ID,
        /// UP Function Features.
        up_function_features: optional UpFunctionFeatures = ie_type::UP_FUNCTION_FEATURES,
        /// CP Function Features.
        cp_function_features: optional CpFunctionFeatures = ie_type::CP_FUNCTION_FEATURES,
        /// PFCP Association Release Request flags (SARR, URSS).
        association_release_request: optional u8 = ie_type::PFCP_ASSOCIATION_RELEASE_REQUEST,
        /// Graceful Release Period (timer unit and value).
        graceful_release_period: optional u8 = ie_type::GRACEFUL_RELEASE_PERIOD,
    }
}

ie_group! {
    /// Association Update Response (8).
    pub struct AssociationUpdateResponse<'a> {
        /// Node ID (M).
        node_id: mandatory NodeId<'a> = ie_type::NODE_ID,
        /// Cause (M).
        cause: mandatory Cause = ie_type::CAUSE,
        /// UP Function Features.
        up_function_features: optional UpFunctionFeatures = ie_type::UP_FUNCTION_FEATURES,
        /// CP Function Features.
        cp_function_features: optional CpFunctionFeatures = ie_type::CP_FUNCTION_FEATURES,
    }
}

ie_group! {
    /// Association Release Request (9).
    pub struct AssociationReleaseRequest<'a> {
        /// Node ID (M).
        node_id: mandatory NodeId<'a> = ie_type::NODE_ID,
    }
}

ie_group! {
    /// Association Release Response (10).
    pub struct AssociationReleaseResponse<'a> {
        /// Node ID (M).
        node_id: mandatory NodeId<'a> = ie_type::NODE_ID,
        /// Cause (M).
        cause: mandatory Cause = ie_type::CAUSE,
    }
}

ie_group! {
    /// Session Establishment Request (50).
    pub struct SessionEstablishmentRequest<'a> {
        /// Node ID of the CP function (M).
        node_id: mandatory NodeId<'a> = ie_type::NODE_ID,
        /// CP F-SEID (M): the SEID the UP function puts in the headers it sends.
        cp_f_seid: mandatory FSeid = ie_type::F_SEID,
        /// Create PDR (M, one or more).
        create_pdr: one_or_more CreatePdr<'a> = ie_type::CREATE_PDR,
        /// Create FAR (M, one or more).
        create_far: one_or_more CreateFar<'a> = ie_type::CREATE_FAR,
        /// Create URR.
        create_urr: multiple CreateUrr = ie_type::CREATE_URR,
        /// Create QER.
        create_qer: multiple CreateQer = ie_type::CREATE_QER,
        /// Create BAR.
        create_bar: optional CreateBar = ie_type::CREATE_BAR,
        /// PDN Type (IPv4 1, IPv6 2, IPv4v6 3, Non-IP 4, Ethernet 5).
        pdn_type: optional u8 = ie_type::PDN_TYPE,
        /// User Plane Inactivity Timer, seconds.
        user_plane_inactivity_timer: optional u32 = ie_type::USER_PLANE_INACTIVITY_TIMER,
        /// APN/DNN (DNS labels).
        apn_dnn: optional &'a [u8] = ie_type::APN_DNN,
    }
}

ie_group! {
    /// Session Establishment Response (51).
    pub struct SessionEstablishmentResponse<'a> {
        /// Node ID of the UP function (M).
        node_id: mandatory NodeId<'a> = ie_type::NODE_ID,
        /// Cause (M).
        cause: mandatory Cause = ie_type::CAUSE,
        /// Offending IE (on a rejection for a missing or incorrect IE).
        offending_ie: optional u16 = ie_type::OFFENDING_IE,
        /// UP F-SEID (on acceptance).
        up_f_seid: optional FSeid = ie_type::F_SEID,
        /// Created PDRs (F-TEIDs or UE addresses the UP function chose).
        created_pdr: multiple CreatedPdr = ie_type::CREATED_PDR,
        /// Failed Rule ID (Cause "Rule creation/modification Failure").
        failed_rule_id: optional FailedRuleId = ie_type::FAILED_RULE_ID,
    }
}

ie_group! {
    /// Session Modification Request (52).
    pub struct SessionModificationRequest<'a> {
        /// CP F-SEID, when the CP function changes it.
        cp_f_seid: optional FSeid = ie_type::F_SEID,
        /// Remove PDR.
        remove_pdr: multiple RemovePdr = ie_type::REMOVE_PDR,
        /// Remove FAR.
        remove_far: multiple RemoveFar = ie_type::REMOVE_FAR,
        /// Remove URR.
        remove_urr: multiple RemoveUrr = ie_type::REMOVE_URR,
        /// Remove QER.
        remove_qer: multiple RemoveQer = ie_type::REMOVE_QER,
        /// Remove BAR.
        remove_bar: optional RemoveBar = ie_type::REMOVE_BAR,
        /// Create PDR.
        create_pdr: multiple CreatePdr<'a> = ie_type::CREATE_PDR,
        /// Create FAR.
        create_far: multiple CreateFar<'a> = ie_type::CREATE_FAR,
        /// Create URR.
        create_urr: multiple CreateUrr = ie_type::CREATE_URR,
        /// Create QER.
        create_qer: multiple CreateQer = ie_type::CREATE_QER,
        /// Create BAR.
        create_bar: optional CreateBar = ie_type::CREATE_BAR,
        /// Update PDR.
        update_pdr: multiple UpdatePdr<'a> = ie_type::UPDATE_PDR,
        /// Update FAR.
        update_far: multiple UpdateFar<'a> = ie_type::UPDATE_FAR,
        /// Update URR.
        update_urr: multiple UpdateUrr = ie_type::UPDATE_URR,
        /// Update QER.
        update_qer: multiple UpdateQer = ie_type::UPDATE_QER,
        /// Update BAR.
        update_bar: optional UpdateBar = ie_type::UPDATE_BAR_SESSION_MODIFICATION_REQUEST,
        /// PFCPSMReq-Flags (DROBU, SNDEM, QAURR).
        pfcpsmreq_flags: optional u8 = ie_type::PFCPSMREQ_FLAGS,
        /// Query URR.
        query_urr: multiple QueryUrr = ie_type::QUERY_URR,
        /// User Plane Inactivity Timer, seconds.
        user_plane_inactivity_timer: optional u32 = ie_type::USER_PLANE_INACTIVITY_TIMER,
    }
}

ie_group! {
    /// Session Modification Response (53).
    pub struct SessionModificationResponse {
        /// Cause (M).
        cause: mandatory Cause = ie_type::CAUSE,
        /// Offending IE.
        offending_ie: optional u16 = ie_type::OFFENDING_IE,
        /// Created PDRs.
        created_pdr: multiple CreatedPdr = ie_type::CREATED_PDR,
        /// Usage Reports (IE 78).
        usage_report: multiple UsageReport = ie_type::USAGE_REPORT_SESSION_MODIFICATION_RESPONSE,
        /// Failed Rule ID.
        failed_rule_id: optional FailedRuleId = ie_type::FAILED_RULE_ID,
    }
}

ie_group! {
    /// Session Deletion Request (54): no IEs.
    pub struct SessionDeletionRequest {}
}

ie_group! {
    /// Session Deletion Response (55).
    pub struct SessionDeletionResponse {
        /// Cause (M).
        cause: mandatory Cause = ie_type::CAUSE,
        /// Offending IE.
        offending_ie: optional u16 = ie_type::OFFENDING_IE,
        /// Final Usage Reports (IE 79).
        usage_report: multiple UsageReport = ie_type::USAGE_REPORT_SESSION_DELETION_RESPONSE,
    }
}

ie_group! {
    /// Session Report Request (56), from the UP function.
    pub struct SessionReportRequest {
        /// Report Type (M).
        report_type: mandatory ReportType = ie_type::REPORT_TYPE,
        /// Downlink Data Report (DLDR).
        downlink_data_report: optional DownlinkDataReport = ie_type::DOWNLINK_DATA_REPORT,
        /// Usage Reports (IE 80, USAR).
        usage_report: multiple UsageReport = ie_type::USAGE_REPORT_SESSION_REPORT_REQUEST,
        /// Error Indication Report (ERIR).
        error_indication_report: optional ErrorIndicationReport = ie_type::ERROR_INDICATION_REPORT,
    }
}

ie_group! {
    /// Session Report Response (57).
    pub struct SessionReportResponse {
        /// Cause (M).
        cause: mandatory Cause = ie_type::CAUSE,
        /// Offending IE.
        offending_ie: optional u16 = ie_type::OFFENDING_IE,
        /// Update BAR (IE 12).
        update_bar: optional UpdateBarReportResponse = ie_type::UPDATE_BAR_SESSION_REPORT_RESPONSE,
        /// PFCPSRRsp-Flags (DROBU).
        pfcpsrrsp_flags: optional u8 = ie_type::PFCPSRRSP_FLAGS,
    }
}

/// The typed body of a PFCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    /// Heartbeat Request (1).
    HeartbeatRequest(HeartbeatRequest),
    /// Heartbeat Response (2).
    HeartbeatResponse(HeartbeatResponse),
    /// Association Setup Request (5).
    AssociationSetupRequest(AssociationSetupRequest<'a>),
    /// Association Setup Response (6).
    AssociationSetupResponse(AssociationSetupResponse<'a>),
    /// Association Update Request (7).
    AssociationUpdateRequest(AssociationUpdateRequest<'a>),
    /// Association Update Response (8).
    AssociationUpdateResponse(AssociationUpdateResponse<'a>),
    /// Association Release Request (9).
    AssociationReleaseRequest(AssociationReleaseRequest<'a>),
    /// Association Release Response (10).
    AssociationReleaseResponse(AssociationReleaseResponse<'a>),
    /// Session Establishment Request (50).
    SessionEstablishmentRequest(SessionEstablishmentRequest<'a>),
    /// Session Establishment Response (51).
    SessionEstablishmentResponse(SessionEstablishmentResponse<'a>),
    /// Session Modification Request (52).
    SessionModificationRequest(SessionModificationRequest<'a>),
    /// Session Modification Response (53).
    SessionModificationResponse(SessionModificationResponse),
    /// Session Deletion Request (54).
    SessionDeletionRequest(SessionDeletionRequest),
    /// Session Deletion Response (55).
    SessionDeletionResponse(SessionDeletionResponse),
    /// Session Report Request (56).
    SessionReportRequest(SessionReportRequest),
    /// Session Report Response (57).
    SessionReportResponse(SessionReportResponse),
}

/// Calls `$f` with the body struct inside any variant.
macro_rules! with_body {
    ($body:expr, $b:ident => $e:expr) => {
        match $body {
            Body::HeartbeatRequest($b) => $e,
            Body::HeartbeatResponse($b) => $e,
            Body::AssociationSetupRequest($b) => $e,
            Body::AssociationSetupResponse($b) => $e,
            Body::AssociationUpdateRequest($b) => $e,
            Body::AssociationUpdateResponse($b) => $e,
            Body::AssociationReleaseRequest($b) => $e,
            Body::AssociationReleaseResponse($b) => $e,
            Body::SessionEstablishmentRequest($b) => $e,
            Body::SessionEstablishmentResponse($b) => $e,
            Body::SessionModificationRequest($b) => $e,
            Body::SessionModificationResponse($b) => $e,
            Body::SessionDeletionRequest($b) => $e,
            Body::SessionDeletionResponse($b) => $e,
            Body::SessionReportRequest($b) => $e,
            Body::SessionReportResponse($b) => $e,
        }
    };
}

impl<'a> Body<'a> {
    /// Parses the IEs of a message of type `message_type` (unknown IEs are skipped; a missing
    /// mandatory IE is [`Error::MissingIe`] with parent 0).
    pub fn parse(kind: u8, ies: &'a [u8]) -> Result<Body<'a>> {
        use message_type as t;
        fn p<'a, T: IeValue<'a>>(ies: &'a [u8]) -> Result<T> {
            T::parse_value(ies, 0)
        }
        Ok(match kind {
            t::HEARTBEAT_REQUEST => Body::HeartbeatRequest(p(ies)?),
            t::HEARTBEAT_RESPONSE => Body::HeartbeatResponse(p(ies)?),
            t::ASSOCIATION_SETUP_REQUEST => Body::AssociationSetupRequest(p(ies)?),
            t::ASSOCIATION_SETUP_RESPONSE => Body::AssociationSetupResponse(p(ies)?),
            t::ASSOCIATION_UPDATE_REQUEST => Body::AssociationUpdateRequest(p(ies)?),
            t::ASSOCIATION_UPDATE_RESPONSE => Body::AssociationUpdateResponse(p(ies)?),
            t::ASSOCIATION_RELEASE_REQUEST => Body::AssociationReleaseRequest(p(ies)?),
            t::ASSOCIATION_RELEASE_RESPONSE => Body::AssociationReleaseResponse(p(ies)?),
            t::SESSION_ESTABLISHMENT_REQUEST => Body::SessionEstablishmentRequest(p(ies)?),
            t::SESSION_ESTABLISHMENT_RESPONSE => Body::SessionEstablishmentResponse(p(ies)?),
            t::SESSION_MODIFICATION_REQUEST => Body::SessionModificationRequest(p(ies)?),
            t::SESSION_MODIFICATION_RESPONSE => Body::SessionModificationResponse(p(ies)?),
            t::SESSION_DELETION_REQUEST => Body::SessionDeletionRequest(p(ies)?),
            t::SESSION_DELETION_RESPONSE => Body::SessionDeletionResponse(p(ies)?),
            t::SESSION_REPORT_REQUEST => Body::SessionReportRequest(p(ies)?),
            t::SESSION_REPORT_RESPONSE => Body::SessionReportResponse(p(ies)?),
            other => return Err(Error::UnknownMessageType(other)),
        })
    }

    /// The message type of this body.
    pub fn message_type(&self) -> u8 {
        use message_type as t;
        match self {
            Body::HeartbeatRequest(_) => t::HEARTBEAT_REQUEST,
            Body::HeartbeatResponse(_) => t::HEARTBEAT_RESPONSE,
            Body::AssociationSetupRequest(_) => t::ASSOCIATION_SETUP_REQUEST,
            Body::AssociationSetupResponse(_) => t::ASSOCIATION_SETUP_RESPONSE,
            Body::AssociationUpdateRequest(_) => t::ASSOCIATION_UPDATE_REQUEST,
            Body::AssociationUpdateResponse(_) => t::ASSOCIATION_UPDATE_RESPONSE,
            Body::AssociationReleaseRequest(_) => t::ASSOCIATION_RELEASE_REQUEST,
            Body::AssociationReleaseResponse(_) => t::ASSOCIATION_RELEASE_RESPONSE,
            Body::SessionEstablishmentRequest(_) => t::SESSION_ESTABLISHMENT_REQUEST,
            Body::SessionEstablishmentResponse(_) => t::SESSION_ESTABLISHMENT_RESPONSE,
            Body::SessionModificationRequest(_) => t::SESSION_MODIFICATION_REQUEST,
            Body::SessionModificationResponse(_) => t::SESSION_MODIFICATION_RESPONSE,
            Body::SessionDeletionRequest(_) => t::SESSION_DELETION_REQUEST,
            Body::SessionDeletionResponse(_) => t::SESSION_DELETION_RESPONSE,
            Body::SessionReportRequest(_) => t::SESSION_REPORT_REQUEST,
            Body::SessionReportResponse(_) => t::SESSION_REPORT_RESPONSE,
        }
    }

    /// Writes the IEs of the body.
    pub fn emit_value(&self, w: &mut Writer<'_>) {
        with_body!(self, b => b.emit_value(w))
    }

    /// Length of the IEs of the body.
    pub fn buffer_len(&self) -> usize {
        with_body!(self, b => b.value_len())
    }
}

/// A parsed PFCP message: header fields and typed body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// SEID (present in session-related messages).
    pub seid: Option<u64>,
    /// 24-bit sequence number.
    pub sequence_number: u32,
    /// Message priority (4 bits), when the MP flag is wanted.
    pub priority: Option<u8>,
    /// The typed body; its variant gives the message type.
    pub body: Body<'a>,
}

impl<'a> Message<'a> {
    /// A node-related message (no SEID).
    pub fn node(sequence_number: u32, body: Body<'a>) -> Self {
        Message {
            seid: None,
            sequence_number,
            priority: None,
            body,
        }
    }

    /// A session-related message to the peer's `seid` (0 in a Session Establishment Request,
    /// where the UP function's SEID is not known yet).
    pub fn session(seid: u64, sequence_number: u32, body: Body<'a>) -> Self {
        Message {
            seid: Some(seid),
            sequence_number,
            priority: None,
            body,
        }
    }

    /// Parses a whole message. To answer a message that fails here, read the header with
    /// [`Packet::new_checked`] and use [`Error::cause`] / [`Error::offending_ie`].
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>> {
        let packet = Packet::new_checked(bytes)?;
        let header = Header::parse(&packet)?;
        let ies = &bytes[packet.header_len()..packet.total_len()];
        Ok(Message {
            seid: header.seid,
            sequence_number: header.sequence_number,
            priority: header.priority,
            body: Body::parse(header.message_type, ies)?,
        })
    }

    /// The message type.
    pub fn message_type(&self) -> u8 {
        self.body.message_type()
    }

    /// The header fields.
    pub fn header(&self) -> Header {
        Header {
            message_type: self.message_type(),
            seid: self.seid,
            sequence_number: self.sequence_number,
            priority: self.priority,
        }
    }

    /// Length of the message this emits.
    pub fn buffer_len(&self) -> usize {
        self.header().buffer_len() + self.body.buffer_len()
    }

    /// Writes the message into `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize> {
        let header = self.header();
        let body_len = self.body.buffer_len();
        let total = header.buffer_len() + body_len;
        if buf.len() < total {
            return Err(Error::BufferTooSmall);
        }
        header.emit(&mut Packet::new_unchecked(&mut *buf), body_len)?;
        let mut w = Writer::new(&mut buf[header.buffer_len()..total]);
        self.body.emit_value(&mut w);
        w.finish()?;
        Ok(total)
    }

    /// The emitted message as a vector.
    pub fn to_vec(&self) -> Result<Vec<u8>> {
        let mut buf = alloc::vec![0u8; self.buffer_len()];
        self.emit(&mut buf)?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use super::*;
    use crate::{
        ApplyAction, FTeid, Interface, OuterHeaderCreation, Qfi, ReportingTriggers, Volume,
    };

    /// A Session Establishment Request as an SMF sends it for an uplink/downlink pair (built
    /// with scapy 2.8.0's contrib.pfcp): Node ID 10.0.0.1, CP F-SEID 0x1122334455667788@10.0.0.1,
    /// PDR 1 (access, F-TEID CHOOSE v4 with Choose ID 1, network instance "internet" in APN
    /// label form, QFI 9, outer header removal GTP-U/UDP/IPv4, FAR 1, QER 1, URR 1),
    /// PDR 2 (core, UE IP 10.45.0.2 destination, SDF filter, FAR 2), FAR 1 forward to core,
    /// FAR 2 forward to access with GTP-U/UDP/IPv4 outer header to 0x1000@192.168.1.5, QER 1
    /// open with MBR 100/200 Mbps, URR 1 volume with a 1 MB total threshold.
    static SESSION_ESTABLISHMENT_REQUEST: &[u8] = &[
        0x21, 0x32, 0x01, 0x51, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x07,
        0x00, 0x00, 0x3c, 0x00, 0x05, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x00, 0x39, 0x00, 0x0d, 0x02,
        0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x0a, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00,
        0x4c, 0x00, 0x38, 0x00, 0x02, 0x00, 0x01, 0x00, 0x1d, 0x00, 0x04, 0x00, 0x00, 0x00, 0xff,
        0x00, 0x02, 0x00, 0x1d, 0x00, 0x14, 0x00, 0x01, 0x00, 0x00, 0x15, 0x00, 0x02, 0x0d, 0x01,
        0x00, 0x16, 0x00, 0x09, 0x08, 0x69, 0x6e, 0x74, 0x65, 0x72, 0x6e, 0x65, 0x74, 0x00, 0x7c,
        0x00, 0x01, 0x09, 0x00, 0x5f, 0x00, 0x01, 0x00, 0x00, 0x6c, 0x00, 0x04, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x51, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x6d, 0x00, 0x04, 0x00, 0x00,
        0x00, 0x01, 0x00, 0x01, 0x00, 0x52, 0x00, 0x38, 0x00, 0x02, 0x00, 0x02, 0x00, 0x1d, 0x00,
        0x04, 0x00, 0x00, 0x00, 0xfe, 0x00, 0x02, 0x00, 0x38, 0x00, 0x14, 0x00, 0x01, 0x01, 0x00,
        0x5d, 0x00, 0x05, 0x06, 0x0a, 0x2d, 0x00, 0x02, 0x00, 0x17, 0x00, 0x26, 0x01, 0x00, 0x00,
        0x22, 0x70, 0x65, 0x72, 0x6d, 0x69, 0x74, 0x20, 0x6f, 0x75, 0x74, 0x20, 0x69, 0x70, 0x20,
        0x66, 0x72, 0x6f, 0x6d, 0x20, 0x61, 0x6e, 0x79, 0x20, 0x74, 0x6f, 0x20, 0x61, 0x73, 0x73,
        0x69, 0x67, 0x6e, 0x65, 0x64, 0x00, 0x6c, 0x00, 0x04, 0x00, 0x00, 0x00, 0x02, 0x00, 0x03,
        0x00, 0x16, 0x00, 0x6c, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x2c, 0x00, 0x01, 0x02,
        0x00, 0x04, 0x00, 0x05, 0x00, 0x2a, 0x00, 0x01, 0x01, 0x00, 0x03, 0x00, 0x24, 0x00, 0x6c,
        0x00, 0x04, 0x00, 0x00, 0x00, 0x02, 0x00, 0x2c, 0x00, 0x01, 0x02, 0x00, 0x04, 0x00, 0x13,
        0x00, 0x2a, 0x00, 0x01, 0x00, 0x00, 0x54, 0x00, 0x0a, 0x01, 0x00, 0x00, 0x00, 0x10, 0x00,
        0xc0, 0xa8, 0x01, 0x05, 0x00, 0x06, 0x00, 0x20, 0x00, 0x51, 0x00, 0x04, 0x00, 0x00, 0x00,
        0x01, 0x00, 0x3e, 0x00, 0x01, 0x02, 0x00, 0x25, 0x00, 0x02, 0x02, 0x00, 0x00, 0x1f, 0x00,
        0x09, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x07, 0x00, 0x1b, 0x00,
        0x6d, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, 0x00, 0x19, 0x00, 0x01, 0x00, 0x00, 0x1a, 0x00,
        0x0a, 0x00, 0x00, 0x01, 0x86, 0xa0, 0x00, 0x00, 0x03, 0x0d, 0x40,
    ];

    #[test]
    fn session_establishment_request_is_parsed() {
        let m = Message::parse(SESSION_ESTABLISHMENT_REQUEST).unwrap();
        assert_eq!(m.seid, Some(0));
        assert_eq!(m.sequence_number, 7);
        let Body::SessionEstablishmentRequest(req) = &m.body else {
            panic!("{m:?}")
        };
        assert_eq!(req.node_id, NodeId::Ipv4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(req.cp_f_seid.seid, 0x1122_3344_5566_7788);
        assert_eq!(req.create_pdr.len(), 2);
        let pdr = &req.create_pdr[0];
        assert_eq!(pdr.precedence, 255);
        assert_eq!(pdr.pdi.source_interface, Interface::ACCESS);
        assert_eq!(
            pdr.pdi.local_f_teid,
            Some(FTeid::Choose {
                ipv4: true,
                ipv6: false,
                choose_id: Some(1)
            })
        );
        assert_eq!(pdr.pdi.network_instance, Some(&b"\x08internet"[..]));
        assert_eq!(pdr.pdi.qfi, [Qfi(9)]);
        assert_eq!(pdr.urr_id, [1]);
        let sdf = req.create_pdr[1].pdi.sdf_filter[0];
        assert_eq!(
            sdf.flow_description,
            Some(&b"permit out ip from any to assigned"[..])
        );
        let far = &req.create_far[1];
        assert_eq!(far.apply_action, ApplyAction::FORW);
        let fp = far.forwarding_parameters.as_ref().unwrap();
        assert_eq!(
            fp.outer_header_creation,
            Some(OuterHeaderCreation::gtpu_ipv4(
                0x1000,
                Ipv4Addr::new(192, 168, 1, 5)
            ))
        );
        let qer = &req.create_qer[0];
        assert_eq!(qer.mbr.unwrap().downlink, 200_000);
        let urr = &req.create_urr[0];
        assert_eq!(urr.reporting_triggers, ReportingTriggers::VOLTH);
        assert_eq!(
            urr.volume_threshold,
            Some(Volume {
                total: Some(1_048_576),
                ..Default::default()
            })
        );
    }

    #[test]
    fn session_establishment_request_round_trips_byte_for_byte() {
        let m = Message::parse(SESSION_ESTABLISHMENT_REQUEST).unwrap();
        assert_eq!(m.to_vec().unwrap(), SESSION_ESTABLISHMENT_REQUEST);
    }

    /// The request without its IEs of type `drop`, length fixed.
    fn without_ie(drop: u16) -> Vec<u8> {
        let packet = Packet::new_checked(SESSION_ESTABLISHMENT_REQUEST).unwrap();
        let mut out = SESSION_ESTABLISHMENT_REQUEST[..packet.header_len()].to_vec();
        let mut rest = packet.payload();
        while !rest.is_empty() {
            let len = 4 + usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            if u16::from_be_bytes([rest[0], rest[1]]) != drop {
                out.extend_from_slice(&rest[..len]);
            }
            rest = &rest[len..];
        }
        let len = (out.len() - 4) as u16;
        out[2..4].copy_from_slice(&len.to_be_bytes());
        out
    }

    #[test]
    fn missing_create_far_names_the_ie() {
        let bytes = without_ie(ie_type::CREATE_FAR);
        let err = Message::parse(&bytes).unwrap_err();
        assert_eq!(
            err,
            Error::MissingIe {
                ie: ie_type::CREATE_FAR,
                parent: 0
            }
        );
        assert_eq!(err.cause(), Some(Cause::MANDATORY_IE_MISSING));
        assert_eq!(err.offending_ie(), Some(3));
        let err = Message::parse(&without_ie(ie_type::F_SEID)).unwrap_err();
        assert_eq!(err.offending_ie(), Some(ie_type::F_SEID));
    }

    #[test]
    fn missing_ie_inside_a_grouped_ie_names_its_parent() {
        // Create PDR without its PDI: Remove it by renaming the PDI type to an unknown one.
        let mut bytes = SESSION_ESTABLISHMENT_REQUEST.to_vec();
        let pdi = bytes
            .windows(4)
            .position(|w| w == [0x00, 0x02, 0x00, 0x1d])
            .unwrap();
        bytes[pdi..pdi + 2].copy_from_slice(&[0x0f, 0xff]);
        assert_eq!(
            Message::parse(&bytes).unwrap_err(),
            Error::MissingIe {
                ie: ie_type::PDI,
                parent: ie_type::CREATE_PDR
            }
        );
    }

    #[test]
    fn unknown_and_vendor_ies_are_skipped() {
        let mut bytes = SESSION_ESTABLISHMENT_REQUEST.to_vec();
        bytes.extend_from_slice(&[0x0f, 0xff, 0x00, 0x02, 0xaa, 0xbb]);
        bytes.extend_from_slice(&[0x80, 0x10, 0x00, 0x03, 0x28, 0xaf, 0x01]);
        let len = (bytes.len() - 4) as u16;
        bytes[2..4].copy_from_slice(&len.to_be_bytes());
        let with = Message::parse(&bytes).unwrap();
        let without = Message::parse(SESSION_ESTABLISHMENT_REQUEST).unwrap();
        assert_eq!(with, without);
    }

    #[test]
    fn heartbeat_response_round_trips() {
        let m = Message::node(
            0x00ab_cdef,
            Body::HeartbeatResponse(HeartbeatResponse {
                recovery_time_stamp: 0xe5a1_b2c3,
            }),
        );
        let bytes = m.to_vec().unwrap();
        assert_eq!(
            bytes,
            [
                0x20, 0x02, 0x00, 0x0c, 0xab, 0xcd, 0xef, 0x00, 0x00, 0x60, 0x00, 0x04, 0xe5, 0xa1,
                0xb2, 0xc3
            ]
        );
        assert_eq!(Message::parse(&bytes).unwrap(), m);
    }

    #[test]
    fn unknown_message_type_is_an_error() {
        let bytes = [0x20, 0x03, 0x00, 0x04, 0x00, 0x00, 0x01, 0x00];
        assert_eq!(
            Message::parse(&bytes).unwrap_err(),
            Error::UnknownMessageType(3)
        );
    }

    #[test]
    fn emit_into_a_short_buffer_is_an_error() {
        let m = Message::parse(SESSION_ESTABLISHMENT_REQUEST).unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(m.emit(&mut buf), Err(Error::BufferTooSmall));
    }
}
