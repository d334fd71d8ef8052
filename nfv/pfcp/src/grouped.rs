//! Grouped IEs (TS 29.244 clause 7.5): rules created, updated and removed by the CP function,
//! and the reports of the UP function.

use crate::ie::{ie_group, ie_type};
use crate::types::{
    ApplyAction, Bitrate, FTeid, GateStatus, Interface, MeasurementMethod, OuterHeaderCreation,
    OuterHeaderRemoval, Qfi, ReportingTriggers, SdfFilter, UeIpAddress, UsageReportTrigger, Volume,
    VolumeMeasurement,
};

ie_group! {
    /// PDI (IE 2): the packet detection information of a PDR.
    pub struct Pdi<'a> {
        /// Source Interface (M).
        source_interface: mandatory Interface = ie_type::SOURCE_INTERFACE,
        /// Local F-TEID, possibly CHOOSE.
        local_f_teid: optional FTeid = ie_type::F_TEID,
        /// Network Instance.
        network_instance: optional &'a [u8] = ie_type::NETWORK_INSTANCE,
        /// UE IP Address.
        ue_ip_address: optional UeIpAddress = ie_type::UE_IP_ADDRESS,
        /// SDF Filters.
        sdf_filter: multiple SdfFilter<'a> = ie_type::SDF_FILTER,
        /// Application ID.
        application_id: optional &'a [u8] = ie_type::APPLICATION_ID,
        /// QFIs.
        qfi: multiple Qfi = ie_type::QFI,
    }
}

ie_group! {
    /// Create PDR (IE 1).
    pub struct CreatePdr<'a> {
        /// PDR ID (M).
        pdr_id: mandatory u16 = ie_type::PDR_ID,
        /// Precedence (M).
        precedence: mandatory u32 = ie_type::PRECEDENCE,
        /// PDI (M).
        pdi: mandatory Pdi<'a> = ie_type::PDI,
        /// Outer Header Removal.
        outer_header_removal: optional OuterHeaderRemoval = ie_type::OUTER_HEADER_REMOVAL,
        /// FAR ID.
        far_id: optional u32 = ie_type::FAR_ID,
        /// URR IDs.
        urr_id: multiple u32 = ie_type::URR_ID,
        /// QER IDs.
        qer_id: multiple u32 = ie_type::QER_ID,
    }
}

ie_group! {
    /// Forwarding Parameters (IE 4) of a Create FAR.
    pub struct ForwardingParameters<'a> {
        /// Destination Interface (M).
        destination_interface: mandatory Interface = ie_type::DESTINATION_INTERFACE,
        /// Network Instance.
        network_instance: optional &'a [u8] = ie_type::NETWORK_INSTANCE,
        /// Outer Header Creation.
        outer_header_creation: optional OuterHeaderCreation = ie_type::OUTER_HEADER_CREATION,
        /// Transport Level Marking (ToS/traffic class and mask).
        transport_level_marking: optional u16 = ie_type::TRANSPORT_LEVEL_MARKING,
    }
}

ie_group! {
    /// Create FAR (IE 3).
    pub struct CreateFar<'a> {
        /// FAR ID (M).
        far_id: mandatory u32 = ie_type::FAR_ID,
        /// Apply Action (M).
        apply_action: mandatory ApplyAction = ie_type::APPLY_ACTION,
        /// Forwarding Parameters (when FORW).
        forwarding_parameters: optional ForwardingParameters<'a> = ie_type::FORWARDING_PARAMETERS,
        /// BAR ID (when BUFF).
        bar_id: optional u8 = ie_type::BAR_ID,
    }
}

ie_group! {
    /// Create URR (IE 6).
    pub struct CreateUrr {
        /// URR ID (M).
        urr_id: mandatory u32 = ie_type::URR_ID,
        /// Measurement Method (M).
        measurement_method: mandatory MeasurementMethod = ie_type::MEASUREMENT_METHOD,
        /// Reporting Triggers (M).
        reporting_triggers: mandatory ReportingTriggers = ie_type::REPORTING_TRIGGERS,
        /// Measurement Period, seconds.
        measurement_period: optional u32 = ie_type::MEASUREMENT_PERIOD,
        /// Volume Threshold.
        volume_threshold: optional Volume = ie_type::VOLUME_THRESHOLD,
        /// Volume Quota.
        volume_quota: optional Volume = ie_type::VOLUME_QUOTA,
        /// Time Threshold, seconds.
        time_threshold: optional u32 = ie_type::TIME_THRESHOLD,
        /// Time Quota, seconds.
        time_quota: optional u32 = ie_type::TIME_QUOTA,
        /// Quota Holding Time, seconds.
        quota_holding_time: optional u32 = ie_type::QUOTA_HOLDING_TIME,
    }
}

ie_group! {
    /// Create QER (IE 7).
    pub struct CreateQer {
        /// QER ID (M).
        qer_id: mandatory u32 = ie_type::QER_ID,
        /// QER Correlation ID.
        qer_correlation_id: optional u32 = ie_type::QER_CORRELATION_ID,
        /// Gate Status (M).
        gate_status: mandatory GateStatus = ie_type::GATE_STATUS,
        /// Maximum bit rate.
        mbr: optional Bitrate = ie_type::MBR,
        /// Guaranteed bit rate.
        gbr: optional Bitrate = ie_type::GBR,
        /// QoS flow identifier.
        qfi: optional Qfi = ie_type::QFI,
    }
}

ie_group! {
    /// Create BAR (IE 85); also Update BAR in a Session Modification Request (IE 86).
    pub struct CreateBar {
        /// BAR ID (M).
        bar_id: mandatory u8 = ie_type::BAR_ID,
        /// Downlink Data Notification Delay (units of 50 ms).
        downlink_data_notification_delay: optional u8 = ie_type::DOWNLINK_DATA_NOTIFICATION_DELAY,
        /// Suggested Buffering Packets Count.
        suggested_buffering_packets_count: optional u8 = ie_type::SUGGESTED_BUFFERING_PACKETS_COUNT,
    }
}

/// Update BAR in a Session Modification Request (IE 86): same content as Create BAR.
pub type UpdateBar = CreateBar;

ie_group! {
    /// Update BAR in a Session Report Response (IE 12).
    pub struct UpdateBarReportResponse {
        /// BAR ID (M).
        bar_id: mandatory u8 = ie_type::BAR_ID,
        /// Downlink Data Notification Delay (units of 50 ms).
        downlink_data_notification_delay: optional u8 = ie_type::DOWNLINK_DATA_NOTIFICATION_DELAY,
        /// DL Buffering Duration (timer unit and value).
        dl_buffering_duration: optional u8 = ie_type::DL_BUFFERING_DURATION,
        /// Suggested Buffering Packets Count.
        suggested_buffering_packets_count: optional u8 = ie_type::SUGGESTED_BUFFERING_PACKETS_COUNT,
    }
}

ie_group! {
    /// Created PDR (IE 8): what the UP function allocated for a PDR.
    pub struct CreatedPdr {
        /// PDR ID (M).
        pdr_id: mandatory u16 = ie_type::PDR_ID,
        /// Local F-TEID allocated by the UP function.
        local_f_teid: optional FTeid = ie_type::F_TEID,
        /// UE IP address allocated by the UP function.
        ue_ip_address: optional UeIpAddress = ie_type::UE_IP_ADDRESS,
    }
}

ie_group! {
    /// Update PDR (IE 9).
    pub struct UpdatePdr<'a> {
        /// PDR ID (M).
        pdr_id: mandatory u16 = ie_type::PDR_ID,
        /// Outer Header Removal.
        outer_header_removal: optional OuterHeaderRemoval = ie_type::OUTER_HEADER_REMOVAL,
        /// Precedence.
        precedence: optional u32 = ie_type::PRECEDENCE,
        /// PDI (replaces the whole PDI).
        pdi: optional Pdi<'a> = ie_type::PDI,
        /// FAR ID.
        far_id: optional u32 = ie_type::FAR_ID,
        /// URR IDs.
        urr_id: multiple u32 = ie_type::URR_ID,
        /// QER IDs.
        qer_id: multiple u32 = ie_type::QER_ID,
    }
}

ie_group! {
    /// Update Forwarding Parameters (IE 11) of an Update FAR.
    pub struct UpdateForwardingParameters<'a> {
        /// Destination Interface.
        destination_interface: optional Interface = ie_type::DESTINATION_INTERFACE,
        /// Network Instance.
        network_instance: optional &'a [u8] = ie_type::NETWORK_INSTANCE,
        /// Outer Header Creation.
        outer_header_creation: optional OuterHeaderCreation = ie_type::OUTER_HEADER_CREATION,
        /// Transport Level Marking.
        transport_level_marking: optional u16 = ie_type::TRANSPORT_LEVEL_MARKING,
        /// PFCPSMReq-Flags (SNDEM: send end marker packets).
        pfcpsmreq_flags: optional u8 = ie_type::PFCPSMREQ_FLAGS,
    }
}

ie_group! {
    /// Update FAR (IE 10).
    pub struct UpdateFar<'a> {
        /// FAR ID (M).
        far_id: mandatory u32 = ie_type::FAR_ID,
        /// Apply Action.
        apply_action: optional ApplyAction = ie_type::APPLY_ACTION,
        /// Update Forwarding Parameters.
        update_forwarding_parameters: optional UpdateForwardingParameters<'a> =
            ie_type::UPDATE_FORWARDING_PARAMETERS,
        /// BAR ID.
        bar_id: optional u8 = ie_type::BAR_ID,
    }
}

ie_group! {
    /// Update URR (IE 13).
    pub struct UpdateUrr {
        /// URR ID (M).
        urr_id: mandatory u32 = ie_type::URR_ID,
        /// Measurement Method.
        measurement_method: optional MeasurementMethod = ie_type::MEASUREMENT_METHOD,
        /// Reporting Triggers.
        reporting_triggers: optional ReportingTriggers = ie_type::REPORTING_TRIGGERS,
        /// Measurement Period.
        measurement_period: optional u32 = ie_type::MEASUREMENT_PERIOD,
        /// Volume Threshold.
        volume_threshold: optional Volume = ie_type::VOLUME_THRESHOLD,
        /// Volume Quota.
        volume_quota: optional Volume = ie_type::VOLUME_QUOTA,
        /// Time Threshold.
        time_threshold: optional u32 = ie_type::TIME_THRESHOLD,
        /// Time Quota.
        time_quota: optional u32 = ie_type::TIME_QUOTA,
        /// Quota Holding Time.
        quota_holding_time: optional u32 = ie_type::QUOTA_HOLDING_TIME,
    }
}

ie_group! {
    /// Update QER (IE 14).
    pub struct UpdateQer {
        /// QER ID (M).
        qer_id: mandatory u32 = ie_type::QER_ID,
        /// QER Correlation ID.
        qer_correlation_id: optional u32 = ie_type::QER_CORRELATION_ID,
        /// Gate Status.
        gate_status: optional GateStatus = ie_type::GATE_STATUS,
        /// Maximum bit rate.
        mbr: optional Bitrate = ie_type::MBR,
        /// Guaranteed bit rate.
        gbr: optional Bitrate = ie_type::GBR,
        /// QoS flow identifier.
        qfi: optional Qfi = ie_type::QFI,
    }
}

ie_group! {
    /// Remove PDR (IE 15).
    pub struct RemovePdr {
        /// PDR ID (M).
        pdr_id: mandatory u16 = ie_type::PDR_ID,
    }
}

ie_group! {
    /// Remove FAR (IE 16).
    pub struct RemoveFar {
        /// FAR ID (M).
        far_id: mandatory u32 = ie_type::FAR_ID,
    }
}

ie_group! {
    /// Remove URR (IE 17).
    pub struct RemoveUrr {
        /// URR ID (M).
        urr_id: mandatory u32 = ie_type::URR_ID,
    }
}

ie_group! {
    /// Remove QER (IE 18).
    pub struct RemoveQer {
        /// QER ID (M).
        qer_id: mandatory u32 = ie_type::QER_ID,
    }
}

ie_group! {
    /// Remove BAR (IE 87).
    pub struct RemoveBar {
        /// BAR ID (M).
        bar_id: mandatory u8 = ie_type::BAR_ID,
    }
}

ie_group! {
    /// Query URR (IE 77): ask for an immediate usage report.
    pub struct QueryUrr {
        /// URR ID (M).
        urr_id: mandatory u32 = ie_type::URR_ID,
    }
}

ie_group! {
    /// Usage Report (IE 78 in a Session Modification Response, 79 in a Session Deletion
    /// Response, 80 in a Session Report Request). Times are NTP seconds.
    pub struct UsageReport {
        /// URR ID (M).
        urr_id: mandatory u32 = ie_type::URR_ID,
        /// UR-SEQN (M).
        ur_seqn: mandatory u32 = ie_type::UR_SEQN,
        /// Usage Report Trigger (M).
        usage_report_trigger: mandatory UsageReportTrigger = ie_type::USAGE_REPORT_TRIGGER,
        /// Start Time.
        start_time: optional u32 = ie_type::START_TIME,
        /// End Time.
        end_time: optional u32 = ie_type::END_TIME,
        /// Volume Measurement.
        volume_measurement: optional VolumeMeasurement = ie_type::VOLUME_MEASUREMENT,
        /// Duration Measurement, seconds.
        duration_measurement: optional u32 = ie_type::DURATION_MEASUREMENT,
        /// Time of First Packet.
        time_of_first_packet: optional u32 = ie_type::TIME_OF_FIRST_PACKET,
        /// Time of Last Packet.
        time_of_last_packet: optional u32 = ie_type::TIME_OF_LAST_PACKET,
        /// Usage Information flags (BEF/AFT/UAE/UBE).
        usage_information: optional u8 = ie_type::USAGE_INFORMATION,
    }
}

ie_group! {
    /// Downlink Data Report (IE 83): PDRs that matched buffered downlink data.
    pub struct DownlinkDataReport {
        /// PDR IDs (at least one).
        pdr_id: one_or_more u16 = ie_type::PDR_ID,
    }
}

ie_group! {
    /// Error Indication Report (IE 99): remote F-TEIDs that answered with Error Indication.
    pub struct ErrorIndicationReport {
        /// Remote F-TEIDs (at least one).
        remote_f_teid: one_or_more FTeid = ie_type::F_TEID,
    }
}
