//! Azure Monitor service-health alert payloads: parse, classify, match against our regions.
//!
//! This module is pure: bytes in, a decision-ready value out, no IO and no clock. The HTTP
//! handler for `POST /v1/alerts/azure-monitor` owns authentication, status codes and the
//! region-state changes; see `docs/alerts.md` for the operator's view.
//!
//! Two payload shapes reach an action-group webhook, and both are accepted:
//!
//! - the **common alert schema** (`"schemaId": "azureMonitorCommonAlertSchema"`), where a
//!   service-health notification has `data.essentials.monitoringService == "ServiceHealth"` and
//!   its details in `data.alertContext.properties`;
//! - the older **activity-log alert schema** (`"schemaId": "Microsoft.Insights/activityLogs"`,
//!   or any payload carrying `data.context.activityLog`), where the details are in
//!   `data.context.activityLog.properties`.
//!
//! The payload is read through [`serde_json::Value`] rather than derived types: only the config
//! crate derives `Deserialize` (ARCHITECTURE.md), and walking a `Value` lets every optional field
//! be missing without ceremony.
//!
//! Lenient in what is accepted (optional fields may be absent, `impactedServices` may be an
//! escaped JSON string as documented or an already-decoded array, `trackingId`/`TrackingId` and
//! the other documented spellings), strict in what is decided: only notifications of type
//! `Incident` are [`Parsed::ServiceHealth`]; maintenance, advisories and security notices are
//! [`Parsed::Irrelevant`] even when their stage is `Active`, because none of them says a region
//! is failing.

use serde_json::{Map, Value};

#[cfg(test)]
mod tests;

/// `schemaId` of the common alert schema.
const COMMON_SCHEMA: &str = "azureMonitorCommonAlertSchema";
/// `schemaId` of the older activity-log alert webhook schema.
const ACTIVITY_LOG_SCHEMA: &str = "Microsoft.Insights/activityLogs";
/// `monitoringService` / `eventSource` / `category` of a service-health notification.
const SERVICE_HEALTH: &str = "ServiceHealth";
/// `monitoringService` of a Resource Health alert in the common schema.
const RESOURCE_HEALTH_COMMON: &str = "Resource Health";
/// `eventSource` / `category` of a Resource Health alert in the activity-log schema.
const RESOURCE_HEALTH: &str = "ResourceHealth";

/// Where an incident is in its lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncidentStage {
    /// Ongoing: `stage == "Active"`, or (without a stage) `Fired` / `Activated`.
    Active,
    /// Mitigated: `stage == "Resolved"`, or (without a stage) `monitorCondition == "Resolved"`.
    Resolved,
    /// Any other stage Azure sends, verbatim (`"RCA"` when the root-cause analysis is
    /// published, for example). Neither marks a region down nor returns it.
    Other(String),
}

/// One entry of `impactedServices`: a service and the regions where it is impacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpactedService {
    /// `ServiceName`, e.g. `"Virtual Machines"`.
    pub name: String,
    /// `ImpactedRegions[].RegionName`, deduplicated ignoring case and whitespace.
    pub regions: Vec<String>,
}

/// A parsed service-health notification of type `Incident`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealthAlert {
    /// The incident's tracking id (`trackingId`), e.g. `"4K_2-VT8"`; the same for every
    /// notification about one incident, so it correlates `Resolved` with `Active`.
    pub tracking_id: String,
    /// Lifecycle stage, from `stage`, else `monitorCondition` / `status`.
    pub stage: IncidentStage,
    /// Every impacted region's display name (`"East US"`), from `impactedServices` and the
    /// comma-separated `region` property, deduplicated ignoring case and whitespace, in order
    /// of first appearance.
    pub impacted_regions: Vec<String>,
    /// Every impacted service's name (`"Video Indexer"`), from `impactedServices` and the
    /// `service` property, deduplicated ignoring case, in order of first appearance.
    pub services: Vec<String>,
    /// The service/region pairs of `impactedServices`, as Azure listed them. Prefer
    /// [`ServiceHealthAlert::regions_for`] over combining `services` and `impacted_regions`,
    /// which loses the pairing.
    pub impacted: Vec<ImpactedService>,
    /// The notification's title (`title`), if any.
    pub title: Option<String>,
    /// The subscription Azure sent the notification for, lower-cased: from
    /// `data.essentials.alertTargetIDs` (`/subscriptions/{id}`) or the `alertId` prefix in the
    /// common schema, `data.context.activityLog.subscriptionId` in the activity-log schema.
    pub subscription: Option<String>,
}

/// Why a body could not be understood. The handler answers 400 to all of these.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// The body is not JSON at all.
    #[error("request body is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// `impactedServices` is a string that does not hold JSON.
    #[error("impactedServices is not a valid JSON string: {0}")]
    ImpactedServices(#[source] serde_json::Error),
    /// JSON, but not a service-health payload of either schema we can act on.
    #[error("malformed Azure Monitor payload: {0}")]
    Malformed(String),
}

/// A Resource Health status of one resource (RFC-less: Azure's documented values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceStatus {
    /// `Available`.
    Available,
    /// `Unavailable`.
    Unavailable,
    /// `Degraded`.
    Degraded,
    /// `Unknown`, or a value Azure has not documented.
    Unknown,
}

impl ResourceStatus {
    /// How events and answers spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceStatus::Available => "Available",
            ResourceStatus::Unavailable => "Unavailable",
            ResourceStatus::Degraded => "Degraded",
            ResourceStatus::Unknown => "Unknown",
        }
    }
}

/// A Resource Health alert: one resource's availability changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceHealthAlert {
    /// The resource's ARM id, lower-cased (ARM ids compare case-insensitively).
    pub resource_id: String,
    /// `currentHealthStatus`.
    pub status: ResourceStatus,
    /// `title`, bounded.
    pub title: Option<String>,
    /// `cause` (`PlatformInitiated`, `UserInitiated`), bounded.
    pub cause: Option<String>,
}

/// What a well-formed body turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A service-health incident notification.
    ServiceHealth(ServiceHealthAlert),
    /// A Resource Health alert for one resource.
    ResourceHealth(ResourceHealthAlert),
    /// A valid Azure Monitor payload that is not a service-health incident (a metric alert, an
    /// administrative activity-log event, planned maintenance, ...), with the reason. The
    /// handler acknowledges it (202) and does nothing else.
    Irrelevant(String),
}

/// The longest `trackingId` accepted, in bytes (Azure's are about eight characters).
const MAX_TRACKING_ID: usize = 128;
/// The longest title, service or region name kept from an alert, in bytes: the webhook is
/// reachable by whoever holds its token, and what it sends is kept (region reasons, events).
const MAX_ALERT_TEXT: usize = 256;
/// The most services, regions, or regions per service kept from one alert. Azure lists the
/// regions of one incident (a few dozen at most); anything past this is dropped.
const MAX_ALERT_ITEMS: usize = 128;

impl ServiceHealthAlert {
    /// The regions this alert reports as impacted for one of `services` (compared ignoring
    /// case); an empty `services` means any service and returns all of
    /// [`ServiceHealthAlert::impacted_regions`].
    ///
    /// With a non-empty filter, only the pairs of `impactedServices` count: an incident for
    /// "Video Indexer" in East US and "Storage" in West Europe, filtered on `["Storage"]`,
    /// yields West Europe only. When the payload has no `impactedServices`, the summary
    /// `region` property is attributed to the summary `service` property.
    pub fn regions_for(&self, services: &[String]) -> Vec<&str> {
        if services.is_empty() {
            return self.impacted_regions.iter().map(String::as_str).collect();
        }
        let wanted = |name: &str| services.iter().any(|s| same_service(s, name));
        let mut out: Vec<&str> = Vec::new();
        if self.impacted.is_empty() {
            if self.services.iter().any(|s| wanted(s)) {
                out.extend(self.impacted_regions.iter().map(String::as_str));
            }
            return out;
        }
        for entry in self.impacted.iter().filter(|e| wanted(&e.name)) {
            for region in &entry.regions {
                if !out.iter().any(|r| same_region(r, region)) {
                    out.push(region);
                }
            }
        }
        out
    }
}

/// Parse the body of an action-group webhook call.
///
/// Returns [`Parsed::ServiceHealth`] for a service-health incident in either schema,
/// [`Parsed::Irrelevant`] for any other Azure Monitor payload, and an [`AlertError`] for a body
/// that is not JSON, not a JSON object, of neither schema, or a service-health payload we cannot
/// act on: no `trackingId` (a later `Resolved` could not be correlated with it), no stage of any
/// kind, or an `impactedServices` that does not decode to an array.
pub fn parse_azure_monitor(body: &[u8]) -> Result<Parsed, AlertError> {
    // Explanations may quote a field of the payload (`incidentType is "..."`): bound them too.
    match parse_payload(body) {
        Ok(Parsed::Irrelevant(mut why)) => {
            pairgate_config::clamp_text(&mut why, MAX_ALERT_TEXT);
            Ok(Parsed::Irrelevant(why))
        }
        Err(AlertError::Malformed(mut why)) => {
            pairgate_config::clamp_text(&mut why, MAX_ALERT_TEXT);
            Err(AlertError::Malformed(why))
        }
        other => other,
    }
}

/// [`parse_azure_monitor`] before its explanations are bounded.
fn parse_payload(body: &[u8]) -> Result<Parsed, AlertError> {
    let root: Value = serde_json::from_slice(body).map_err(AlertError::NotJson)?;
    let Some(root) = root.as_object() else {
        return Err(AlertError::Malformed(format!(
            "expected a JSON object, got {}",
            json_kind(&root)
        )));
    };
    let schema_id = root.get("schemaId").and_then(Value::as_str);
    let activity_log = root
        .get("data")
        .and_then(|d| d.get("context"))
        .and_then(|c| c.get("activityLog"))
        .and_then(Value::as_object);
    match (schema_id, activity_log) {
        (Some(COMMON_SCHEMA), _) => parse_common(root),
        (_, Some(log)) => parse_activity_log(root, log),
        (Some(ACTIVITY_LOG_SCHEMA), None) => Err(AlertError::Malformed(
            "activity-log payload without data.context.activityLog".to_owned(),
        )),
        // Another Azure Monitor schema (classic metric alerts, budgets, ...): an action group
        // shared with other alert rules may send it here; it is valid, just not ours.
        (Some(other), None) => Ok(Parsed::Irrelevant(format!(
            "schemaId {other:?} is not a service-health schema"
        ))),
        (None, None) => Err(AlertError::Malformed(
            "neither a common alert schema payload (schemaId) nor an activity-log alert \
             (data.context.activityLog)"
                .to_owned(),
        )),
    }
}

/// Whether `alert_region` (a display name from an alert) is our region: compared with
/// `azure_name` when it is set, otherwise with `name`, ignoring case and all whitespace, so
/// `"East US"` matches `eastus`. An empty alert region matches nothing.
pub fn region_matches(alert_region: &str, name: &str, azure_name: Option<&str>) -> bool {
    let alert = region_key(alert_region);
    !alert.is_empty() && alert == region_key(azure_name.unwrap_or(name))
}

/// Whether the alert concerns one of `services` (compared ignoring case and surrounding
/// whitespace); an empty list means any service.
pub fn service_matches(alert: &ServiceHealthAlert, services: &[String]) -> bool {
    services.is_empty()
        || services
            .iter()
            .any(|wanted| alert.services.iter().any(|s| same_service(wanted, s)))
}

/// Common alert schema: `data.essentials` + `data.alertContext.properties`.
fn parse_common(root: &Map<String, Value>) -> Result<Parsed, AlertError> {
    let data = root.get("data").and_then(Value::as_object);
    let Some(essentials) = data
        .and_then(|d| d.get("essentials"))
        .and_then(Value::as_object)
    else {
        return Err(AlertError::Malformed(
            "common alert schema payload without data.essentials".to_owned(),
        ));
    };
    let service = str_field(essentials, &["monitoringService"]);
    if service == Some(RESOURCE_HEALTH_COMMON) {
        // The resource is the alert's target; the status is in the activity-log properties.
        let resource = essentials
            .get("alertTargetIDs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .find(|id| id.to_ascii_lowercase().contains("/providers/"));
        let properties = data
            .and_then(|d| d.get("alertContext"))
            .and_then(|c| c.get("properties"))
            .and_then(Value::as_object);
        return resource_health(resource, properties, "data.essentials.alertTargetIDs");
    }
    if service != Some(SERVICE_HEALTH) {
        return Ok(Parsed::Irrelevant(format!(
            "monitoringService is {}, not ServiceHealth",
            describe(service)
        )));
    }
    let properties = data
        .and_then(|d| d.get("alertContext"))
        .and_then(|c| c.get("properties"))
        .and_then(Value::as_object);
    // Activity-log alerts are stateless: Azure sends `monitorCondition: "Fired"` even for a
    // `Resolved` stage (see the action group's own test payload), so the stage wins.
    let fallback = match str_field(essentials, &["monitorCondition"]) {
        Some("Fired") => Some(IncidentStage::Active),
        Some("Resolved") => Some(IncidentStage::Resolved),
        _ => None,
    };
    // `alertTargetIDs` lists the subscription a service-health alert fired in; `alertId`
    // (`/subscriptions/{id}/providers/Microsoft.AlertsManagement/alerts/{guid}`) starts with it.
    let subscription = essentials
        .get("alertTargetIDs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .chain(str_field(essentials, &["alertId"]))
        .find_map(subscription_of);
    service_health(
        properties,
        fallback,
        "data.alertContext.properties",
        subscription,
    )
}

/// The subscription id of an ARM id that starts with `/subscriptions/{id}`, lower-cased.
fn subscription_of(id: &str) -> Option<String> {
    let rest = id.trim().strip_prefix('/')?;
    let (segment, rest) = rest.split_once('/').unwrap_or((rest, ""));
    if !segment.eq_ignore_ascii_case("subscriptions") {
        return None;
    }
    let sub = rest.split('/').next()?.trim();
    (!sub.is_empty() && sub.len() <= 64).then(|| sub.to_ascii_lowercase())
}

/// Activity-log alert schema: `data.status` + `data.context.activityLog`.
fn parse_activity_log(
    root: &Map<String, Value>,
    log: &Map<String, Value>,
) -> Result<Parsed, AlertError> {
    // The documented sample carries `eventSource`; the schema's table names `category`.
    let source = str_field(log, &["eventSource", "category"]);
    if source == Some(RESOURCE_HEALTH) {
        let properties = log.get("properties").and_then(Value::as_object);
        return resource_health(
            str_field(log, &["resourceId"]),
            properties,
            "data.context.activityLog.resourceId",
        );
    }
    if source != Some(SERVICE_HEALTH) {
        return Ok(Parsed::Irrelevant(format!(
            "activity-log category is {}, not ServiceHealth",
            describe(source)
        )));
    }
    let data = root.get("data").and_then(Value::as_object);
    // `data.status` is documented as always `Activated` for activity-log alerts, so it is
    // only a fallback; `activityLog.status` (`Active`/`Resolved`) is the next best.
    let fallback = match data.and_then(|d| str_field(d, &["status"])) {
        Some("Activated") => Some(IncidentStage::Active),
        Some("Resolved") => Some(IncidentStage::Resolved),
        _ => match str_field(log, &["status"]) {
            Some("Active") => Some(IncidentStage::Active),
            Some("Resolved") => Some(IncidentStage::Resolved),
            _ => None,
        },
    };
    let properties = log.get("properties").and_then(Value::as_object);
    let subscription = str_field(log, &["subscriptionId"])
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= 64)
        .map(str::to_ascii_lowercase);
    service_health(
        properties,
        fallback,
        "data.context.activityLog.properties",
        subscription,
    )
}

/// The schema-independent part of a Resource Health alert: the resource and its
/// `properties.currentHealthStatus`.
fn resource_health(
    resource: Option<&str>,
    properties: Option<&Map<String, Value>>,
    path: &str,
) -> Result<Parsed, AlertError> {
    let Some(resource) = resource.map(str::trim).filter(|r| !r.is_empty()) else {
        return Err(AlertError::Malformed(format!(
            "Resource Health payload without a resource ({path})"
        )));
    };
    if resource.len() > MAX_ALERT_TEXT * 2 {
        return Err(AlertError::Malformed(format!(
            "{path} is {} bytes long; at most {} are accepted",
            resource.len(),
            MAX_ALERT_TEXT * 2
        )));
    }
    let Some(props) = properties else {
        return Err(AlertError::Malformed(
            "Resource Health payload without properties".to_owned(),
        ));
    };
    let status = match str_field(props, &["currentHealthStatus"]).map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("Available") => ResourceStatus::Available,
        Some(s) if s.eq_ignore_ascii_case("Unavailable") => ResourceStatus::Unavailable,
        Some(s) if s.eq_ignore_ascii_case("Degraded") => ResourceStatus::Degraded,
        Some(_) => ResourceStatus::Unknown,
        None => {
            return Err(AlertError::Malformed(
                "Resource Health payload without properties.currentHealthStatus".to_owned(),
            ));
        }
    };
    let text = |key: &str| {
        str_field(props, &[key])
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(bounded_text)
    };
    Ok(Parsed::ResourceHealth(ResourceHealthAlert {
        resource_id: resource.to_ascii_lowercase(),
        status,
        title: text("title"),
        cause: text("cause"),
    }))
}

/// The schema-independent part: the `properties` of a service-health event.
fn service_health(
    properties: Option<&Map<String, Value>>,
    fallback: Option<IncidentStage>,
    path: &str,
    subscription: Option<String>,
) -> Result<Parsed, AlertError> {
    let Some(props) = properties else {
        return Err(AlertError::Malformed(format!(
            "service-health payload without {path}"
        )));
    };
    if let Some(kind) = str_field(props, &["incidentType", "IncidentType"])
        && !kind.eq_ignore_ascii_case("Incident")
    {
        return Ok(Parsed::Irrelevant(format!(
            "incidentType is {kind:?}, not Incident"
        )));
    }
    let tracking_id = match str_field(props, &["trackingId", "TrackingId"]).map(str::trim) {
        Some(id) if id.len() > MAX_TRACKING_ID => {
            return Err(AlertError::Malformed(format!(
                "{path}.trackingId is {} bytes long; tracking ids are short (\"4K_2-VT8\"), at most \
                 {MAX_TRACKING_ID} bytes are accepted",
                id.len()
            )));
        }
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => {
            return Err(AlertError::Malformed(format!(
                "service-health payload without {path}.trackingId; a later Resolved could not \
                 be correlated with it"
            )));
        }
    };
    let stage = match str_field(props, &["stage", "Stage"]).map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("Active") => IncidentStage::Active,
        Some(s) if s.eq_ignore_ascii_case("Resolved") => IncidentStage::Resolved,
        Some(s) if !s.is_empty() => IncidentStage::Other(bounded_text(s)),
        _ => fallback.ok_or_else(|| {
            AlertError::Malformed(format!(
                "service-health incident {tracking_id:?} has no stage, monitorCondition or status"
            ))
        })?,
    };
    let impacted = impacted_services(props.get("impactedServices"))?;

    let mut regions = Vec::new();
    let mut services = Vec::new();
    for entry in &impacted {
        push_unique(&mut services, &entry.name, eq_ignore_case);
        for region in &entry.regions {
            push_unique(&mut regions, region, same_region);
        }
    }
    for region in str_field(props, &["region"]).unwrap_or("").split(',') {
        push_unique(&mut regions, region, same_region);
    }
    if let Some(service) = str_field(props, &["service"]) {
        push_unique(&mut services, service, eq_ignore_case);
    }
    let title = str_field(props, &["title", "defaultLanguageTitle"])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(bounded_text);
    Ok(Parsed::ServiceHealth(ServiceHealthAlert {
        tracking_id,
        stage,
        impacted_regions: regions,
        services,
        impacted,
        title,
        subscription,
    }))
}

/// Decode `impactedServices`: documented as an escaped JSON string holding an array; an array
/// that is already decoded is accepted too, and an absent, `null` or blank value is no entries.
fn impacted_services(value: Option<&Value>) -> Result<Vec<ImpactedService>, AlertError> {
    let decoded;
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(Vec::new()),
        Some(Value::String(s)) => {
            decoded = serde_json::from_str::<Value>(s).map_err(AlertError::ImpactedServices)?;
            &decoded
        }
        Some(other) => other,
    };
    let Some(items) = items.as_array() else {
        return Err(AlertError::Malformed(format!(
            "impactedServices must hold a JSON array, got {}",
            json_kind(items)
        )));
    };
    let mut out: Vec<ImpactedService> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(item) = item.as_object() else {
            return Err(AlertError::Malformed(format!(
                "impactedServices[{i}] must be an object, got {}",
                json_kind(item)
            )));
        };
        let mut regions = Vec::new();
        let listed = item
            .get("ImpactedRegions")
            .or_else(|| item.get("impactedRegions"))
            .and_then(Value::as_array);
        for region in listed.into_iter().flatten().filter_map(Value::as_object) {
            if let Some(name) = str_field(region, &["RegionName", "regionName"]) {
                push_unique(&mut regions, name, same_region);
            }
        }
        let name = bounded_text(
            str_field(item, &["ServiceName", "serviceName"])
                .map(str::trim)
                .unwrap_or(""),
        );
        let name = name.as_str();
        // The same service listed twice (Azure does not, but a hand-written test might) merges.
        let full = out.len() >= MAX_ALERT_ITEMS;
        match out.iter_mut().find(|e| eq_ignore_case(&e.name, name)) {
            Some(existing) => {
                for region in regions {
                    push_unique(&mut existing.regions, &region, same_region);
                }
            }
            None if name.is_empty() && regions.is_empty() => {}
            None if full => {}
            None => out.push(ImpactedService {
                name: name.to_owned(),
                regions,
            }),
        }
    }
    Ok(out)
}

/// The first of `keys` present in `map` as a string.
fn str_field<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter()
        .find_map(|k| map.get(*k).and_then(Value::as_str))
}

/// Push `value` (trimmed) unless it is blank or `same` as an element already present.
/// At most [`MAX_ALERT_ITEMS`] are kept, each cut to [`MAX_ALERT_TEXT`] before it is compared,
/// so a body full of names costs linear time and bounded memory.
fn push_unique(list: &mut Vec<String>, value: &str, same: impl Fn(&str, &str) -> bool) {
    let value = bounded_text(value.trim());
    if list.len() < MAX_ALERT_ITEMS && !value.is_empty() && !list.iter().any(|v| same(v, &value)) {
        list.push(value);
    }
}

/// `text` as an owned string of at most [`MAX_ALERT_TEXT`] bytes.
fn bounded_text(text: &str) -> String {
    // Copy at most one character past the limit, so that clamping marks the cut.
    let end = text
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| i > MAX_ALERT_TEXT)
        .unwrap_or(text.len());
    let mut out = text[..end].to_owned();
    pairgate_config::clamp_text(&mut out, MAX_ALERT_TEXT);
    out
}

/// A region name reduced for comparison: lowercase, all whitespace removed.
fn region_key(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Whether two region names are the same ignoring case and whitespace.
fn same_region(a: &str, b: &str) -> bool {
    region_key(a) == region_key(b)
}

/// A service name as compared: lower-cased, without the "Azure AI " or "Azure " prefix Azure
/// puts on some display names (and leaves off others, and changes over time), without
/// whitespace. `"Azure AI Video Indexer"`, `"Video Indexer"` and `"video indexer"` are one.
fn service_key(name: &str) -> String {
    let lower = name.trim().to_lowercase();
    let bare = lower
        .strip_prefix("azure ai ")
        .or_else(|| lower.strip_prefix("azure "))
        .unwrap_or(&lower);
    bare.chars().filter(|c| !c.is_whitespace()).collect()
}

/// Whether two service names name the same service (see [`service_key`]).
pub fn same_service(a: &str, b: &str) -> bool {
    let (a, b) = (service_key(a), service_key(b));
    !a.is_empty() && a == b
}

/// Case-insensitive comparison of names, ignoring surrounding whitespace.
fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// `"X"` for a present string field, `absent` otherwise.
fn describe(value: Option<&str>) -> String {
    value.map_or_else(|| "absent".to_owned(), |v| format!("{v:?}"))
}

/// A JSON value's kind, for error messages.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
