//! The records a release writes are valid against the official schemas,
//! vendored in `tests/schemas/` (see its README for versions and
//! licences): CVE JSON 5.1.1 (CVE Record Format, bundled) and OSV (the
//! published `validation/schema.json`). Formats (date-time, uri) are
//! checked too. A deliberately broken record must fail, or the check
//! proves nothing.

mod common;

use chrono::{DateTime, Utc};
use embargod::advisory::records::{self, Source};
use embargod::advisory::AdvisoryData;
use embargod::case::score;
use embargod::config::Config;
use embargod::sandbox::Sandbox;
use serde_json::Value;

fn errors(validator: &jsonschema::Validator, record: &Value) -> Vec<String> {
    validator
        .iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect()
}

fn config(publish: &str) -> (tempfile::TempDir, Config) {
    let dir = tempfile::tempdir().unwrap();
    let mut sandbox = Sandbox::new(dir.path()).unwrap();
    sandbox.extra = format!("[publish]\n{publish}");
    let file = sandbox.write_config().unwrap();
    let config = Config::load(&file).unwrap();
    (dir, config)
}

fn data(lines: &[(&str, &str)]) -> AdvisoryData {
    let mut data = AdvisoryData::default();
    let mut seen = std::collections::HashSet::new();
    for (name, value) in lines {
        let first = seen.insert(*name);
        data.apply(name, value, first)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    data
}

const TEXT: &str = "A crafted header of more than 64 KiB overflows a heap buffer in the \
header parser of Kappital before 1.4.2; a remote attacker can crash the server or run code.\n\n\
Details follow.\n";

fn published() -> DateTime<Utc> {
    "2026-12-08T16:00:00Z".parse().unwrap()
}

#[test]
fn full_records_are_valid_cve_5_1_and_osv() {
    let cve_schema = common::schema("cve-5.1.1.json");
    let osv_schema = common::schema("osv.json");
    let (_dir, config) = config(
        "cna_org_id = \"8254265b-2729-46b6-b9e3-3dfca2d5bfca\"\ncna_short_name = \"kappital\"\n",
    );
    let full = data(&[
        ("summary", "Heap overflow in the header parser"),
        ("affected", ">=1.0.0, <1.4.2"),
        ("affected", "kappital-cli <=2.0.1"),
        ("affected", "kappital-legacy =0.9"),
        ("fixed", "1.4.2, 1.3.9"),
        ("cwe", "CWE-122, CWE-787"),
        ("credit", "finder: Jane Doe"),
        ("credit", "remediation developer: Bob Builder"),
        (
            "reference",
            "fix https://git.kappital.example/commit/1a2b3c",
        ),
        (
            "reference",
            "package https://kappital.example/releases/1.4.2",
        ),
        ("reference", "https://kappital.example/security"),
        ("cve", "CVE-2026-12345"),
        (
            "mitigation",
            "Set max_header_size = 8192 until you can upgrade.",
        ),
    ]);
    for vector in [
        "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
        "CVSS:3.0/AV:N/AC:H/PR:N/UI:N/S:U/C:L/I:N/A:N",
        "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
    ] {
        let cvss = score(vector).unwrap();
        let source = Source {
            case: "KAP-2026-0001",
            data: &full,
            cvss: Some(&cvss),
            subject: "[EMBARGOED] Fix for the parser",
            text: TEXT,
            published: published(),
        };
        let cve = records::cve(&config, &source).unwrap();
        assert_eq!(errors(&cve_schema, &cve), Vec::<String>::new(), "{cve:#}");
        let osv = records::osv(&config, &source);
        assert_eq!(errors(&osv_schema, &osv), Vec::<String>::new(), "{osv:#}");

        // What a reader of the records checks.
        let cna = &cve["containers"]["cna"];
        assert_eq!(cve["cveMetadata"]["cveId"], "CVE-2026-12345");
        assert_eq!(cna["datePublic"], "2026-12-08T16:00:00Z");
        assert_eq!(cna["title"], "Heap overflow in the header parser");
        assert_eq!(cna["affected"][0]["product"], "kappital");
        assert_eq!(cna["affected"][0]["versions"][0]["lessThan"], "1.4.2");
        assert_eq!(
            cna["affected"][1]["versions"][0]["lessThanOrEqual"],
            "2.0.1"
        );
        assert_eq!(
            cna["problemTypes"][0]["descriptions"][1]["cweId"],
            "CWE-787"
        );
        assert_eq!(cna["credits"][1]["type"], "remediation developer");
        assert_eq!(cna["references"][0]["tags"][0], "patch");
        let metric = &cna["metrics"][0];
        let key = match &vector[..8] {
            "CVSS:4.0" => "cvssV4_0",
            "CVSS:3.0" => "cvssV3_0",
            _ => "cvssV3_1",
        };
        assert_eq!(metric[key]["vectorString"], vector);
        assert!(cna["descriptions"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("A crafted header"));
        assert!(cna["solutions"][0]["value"]
            .as_str()
            .unwrap()
            .contains("1.4.2 or 1.3.9"));

        assert_eq!(osv["id"], "x_KAP-2026-0001");
        assert_eq!(osv["aliases"][0], "CVE-2026-12345");
        assert_eq!(osv["published"], "2026-12-08T16:00:00Z");
        assert_eq!(
            osv["affected"][0]["ranges"][0]["events"][1]["fixed"],
            "1.4.2"
        );
        assert_eq!(
            osv["affected"][1]["ranges"][0]["events"][1]["last_affected"],
            "2.0.1"
        );
        assert_eq!(osv["affected"][2]["versions"][0], "0.9");
        assert_eq!(osv["credits"][1]["type"], "REMEDIATION_DEVELOPER");
        assert_eq!(osv["references"][0]["type"], "FIX");
        assert_eq!(osv["severity"][0]["score"], vector);
        assert_eq!(osv["details"], TEXT.trim());
    }
}

#[test]
fn a_package_ecosystem_and_a_registered_prefix_are_valid_too() {
    let osv_schema = common::schema("osv.json");
    let (_dir, config) =
        config("ecosystem = \"crates.io\"\nproduct = \"kappital\"\nosv_id_prefix = \"RUSTSEC-\"\n");
    let minimal = data(&[("affected", "<1.4.2")]);
    let source = Source {
        case: "KAP-2026-0002",
        data: &minimal,
        cvss: None,
        subject: "",
        text: "",
        published: published(),
    };
    let osv = records::osv(&config, &source);
    assert_eq!(errors(&osv_schema, &osv), Vec::<String>::new(), "{osv:#}");
    assert_eq!(osv["affected"][0]["package"]["ecosystem"], "crates.io");
    assert_eq!(osv["affected"][0]["ranges"][0]["type"], "ECOSYSTEM");
    assert_eq!(osv["summary"], "Security advisory KAP-2026-0002");
}

#[test]
fn no_cve_record_without_an_id_or_a_cna_and_a_broken_record_fails_the_schema() {
    let cve_schema = common::schema("cve-5.1.1.json");
    let osv_schema = common::schema("osv.json");
    let (_dir, config) = config("cna_org_id = \"8254265b-2729-46b6-b9e3-3dfca2d5bfca\"\n");
    let no_id = data(&[("affected", "<1.4.2")]);
    let source = Source {
        case: "KAP-2026-0003",
        data: &no_id,
        cvss: None,
        subject: "Fix",
        text: TEXT,
        published: published(),
    };
    assert_eq!(records::cve(&config, &source), Err(records::Missing::CveId));
    let (_dir2, no_cna) = config_without_cna();
    let with_id = data(&[("affected", "<1.4.2"), ("cve", "CVE-2026-1000")]);
    let source = Source {
        data: &with_id,
        ..source
    };
    assert_eq!(
        records::cve(&no_cna, &source),
        Err(records::Missing::CnaOrgId)
    );

    // The schemas do catch what is wrong.
    let mut cve = records::cve(&config, &source).unwrap();
    assert!(errors(&cve_schema, &cve).is_empty());
    cve["containers"]["cna"]["affected"] = serde_json::json!([]);
    assert!(
        !errors(&cve_schema, &cve).is_empty(),
        "an empty affected list passed"
    );
    let mut osv = records::osv(&config, &source);
    osv["published"] = serde_json::json!("8 December 2026");
    assert!(!errors(&osv_schema, &osv).is_empty(), "a bad time passed");
    let mut osv = records::osv(&config, &source);
    osv["id"] = serde_json::json!("KAP-2026-0003");
    assert!(
        !errors(&osv_schema, &osv).is_empty(),
        "an unregistered prefix without x_ passed"
    );
}

fn config_without_cna() -> (tempfile::TempDir, Config) {
    config("")
}
