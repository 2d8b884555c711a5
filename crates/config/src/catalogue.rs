//! Azure's documented regions and region pairs, so a `[[region]]` named like an Azure region
//! gets its display name (what alerts say) and its documented pair without typing them.
//!
//! Source: Microsoft's "Azure region pairs and nonpaired regions" (cross-region replication)
//! page, the "Azure regional pairs" table and the list of regions without a pair. Names are the
//! display names lower-cased without spaces, which is how Azure spells a region's programmatic
//! name (`East US` is `eastus`). Pairs are mutual except where the page says a region is paired
//! in one direction only: West US 3 -> East US, Brazil South -> South Central US, Brazil
//! Southeast -> Brazil South and West India -> South India. Regions missing here (newer ones) are
//! unknown: they work as before, with `azure_name` and `pair` set by hand.

/// One Azure region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AzureRegion {
    /// Programmatic name, e.g. `eastus`.
    pub name: &'static str,
    /// Display name, as Service Health alerts write it, e.g. `East US`.
    pub display: &'static str,
    /// The documented secondary region, if the region has one.
    pub pair: Option<&'static str>,
}

impl AzureRegion {
    /// Whether the documented pair does not pair back.
    pub fn one_way(&self) -> bool {
        self.pair
            .and_then(lookup)
            .is_some_and(|p| p.pair != Some(self.name))
    }
}

macro_rules! regions {
    ($(($name:literal, $display:literal, $pair:expr)),* $(,)?) => {
        /// Every region of the catalogue, in the order of the documentation's table.
        pub const AZURE_REGIONS: &[AzureRegion] = &[
            $(AzureRegion { name: $name, display: $display, pair: $pair }),*
        ];
    };
}

regions![
    ("eastasia", "East Asia", Some("southeastasia")),
    ("southeastasia", "Southeast Asia", Some("eastasia")),
    (
        "australiaeast",
        "Australia East",
        Some("australiasoutheast")
    ),
    (
        "australiasoutheast",
        "Australia Southeast",
        Some("australiaeast")
    ),
    (
        "australiacentral",
        "Australia Central",
        Some("australiacentral2")
    ),
    (
        "australiacentral2",
        "Australia Central 2",
        Some("australiacentral")
    ),
    ("brazilsouth", "Brazil South", Some("southcentralus")),
    ("brazilsoutheast", "Brazil Southeast", Some("brazilsouth")),
    ("canadacentral", "Canada Central", Some("canadaeast")),
    ("canadaeast", "Canada East", Some("canadacentral")),
    ("chinanorth", "China North", Some("chinaeast")),
    ("chinaeast", "China East", Some("chinanorth")),
    ("chinanorth2", "China North 2", Some("chinaeast2")),
    ("chinaeast2", "China East 2", Some("chinanorth2")),
    ("chinanorth3", "China North 3", Some("chinaeast3")),
    ("chinaeast3", "China East 3", Some("chinanorth3")),
    ("northeurope", "North Europe", Some("westeurope")),
    ("westeurope", "West Europe", Some("northeurope")),
    ("francecentral", "France Central", Some("francesouth")),
    ("francesouth", "France South", Some("francecentral")),
    (
        "germanywestcentral",
        "Germany West Central",
        Some("germanynorth")
    ),
    ("germanynorth", "Germany North", Some("germanywestcentral")),
    ("centralindia", "Central India", Some("southindia")),
    ("southindia", "South India", Some("centralindia")),
    ("westindia", "West India", Some("southindia")),
    ("japaneast", "Japan East", Some("japanwest")),
    ("japanwest", "Japan West", Some("japaneast")),
    ("koreacentral", "Korea Central", Some("koreasouth")),
    ("koreasouth", "Korea South", Some("koreacentral")),
    ("eastus", "East US", Some("westus")),
    ("westus", "West US", Some("eastus")),
    ("eastus2", "East US 2", Some("centralus")),
    ("centralus", "Central US", Some("eastus2")),
    ("northcentralus", "North Central US", Some("southcentralus")),
    ("southcentralus", "South Central US", Some("northcentralus")),
    ("westus2", "West US 2", Some("westcentralus")),
    ("westcentralus", "West Central US", Some("westus2")),
    ("westus3", "West US 3", Some("eastus")),
    ("norwayeast", "Norway East", Some("norwaywest")),
    ("norwaywest", "Norway West", Some("norwayeast")),
    (
        "southafricanorth",
        "South Africa North",
        Some("southafricawest")
    ),
    (
        "southafricawest",
        "South Africa West",
        Some("southafricanorth")
    ),
    ("swedencentral", "Sweden Central", Some("swedensouth")),
    ("swedensouth", "Sweden South", Some("swedencentral")),
    (
        "switzerlandnorth",
        "Switzerland North",
        Some("switzerlandwest")
    ),
    (
        "switzerlandwest",
        "Switzerland West",
        Some("switzerlandnorth")
    ),
    ("ukwest", "UK West", Some("uksouth")),
    ("uksouth", "UK South", Some("ukwest")),
    ("uaenorth", "UAE North", Some("uaecentral")),
    ("uaecentral", "UAE Central", Some("uaenorth")),
    ("usdodeast", "US DoD East", Some("usdodcentral")),
    ("usdodcentral", "US DoD Central", Some("usdodeast")),
    ("usgovarizona", "US Gov Arizona", Some("usgovtexas")),
    ("usgovvirginia", "US Gov Virginia", Some("usgovtexas")),
    ("usgovtexas", "US Gov Texas", None),
    ("qatarcentral", "Qatar Central", None),
    ("polandcentral", "Poland Central", None),
    ("israelcentral", "Israel Central", None),
    ("italynorth", "Italy North", None),
    ("austriaeast", "Austria East", None),
    ("spaincentral", "Spain Central", None),
];

/// The catalogue's entry for `name` (a programmatic name, compared ignoring case).
pub fn lookup(name: &str) -> Option<&'static AzureRegion> {
    AZURE_REGIONS
        .iter()
        .find(|r| r.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_mutual_except_the_documented_one_way_ones() {
        let one_way: Vec<&str> = AZURE_REGIONS
            .iter()
            .filter(|r| r.one_way())
            .map(|r| r.name)
            .collect();
        // US Gov Arizona and US Gov Virginia both pair with US Gov Texas, whose own pair the
        // table does not give.
        assert_eq!(
            one_way,
            [
                "brazilsouth",
                "brazilsoutheast",
                "westindia",
                "westus3",
                "usgovarizona",
                "usgovvirginia"
            ]
        );
        for r in AZURE_REGIONS {
            assert_eq!(
                r.name,
                r.display.to_ascii_lowercase().replace(' ', ""),
                "{}: the name is the display name without spaces",
                r.display
            );
            if let Some(p) = r.pair {
                assert!(
                    lookup(p).is_some(),
                    "{}: pair {p} is in the catalogue",
                    r.name
                );
            }
        }
        assert_eq!(lookup("EastUS").map(|r| r.display), Some("East US"));
        assert!(lookup("mars").is_none());
    }
}
