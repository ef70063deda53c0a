//! The service unit's hardening, as `systemd-analyze security` scores it:
//! an exposure of 1.5 or lower.

use std::process::Command;

#[test]
fn the_unit_is_hardened_to_an_exposure_of_at_most_1_5() {
    let unit = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/embargod.service");
    let output = match Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager", unit])
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            // CI machines have systemd-analyze; a developer's may not.
            eprintln!("skipped: systemd-analyze is not available ({e})");
            return;
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure figure in:\n{text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    let figure: f64 = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot read {line:?}"));
    assert!(
        figure <= 1.5,
        "exposure {figure} (target 1.5 or lower):\n{text}"
    );
}

#[test]
fn the_sysusers_file_declares_the_service_user() {
    let sysusers = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/embargod.sysusers"
    ))
    .unwrap();
    assert!(
        sysusers.lines().any(|l| l.starts_with("u embargod ")),
        "{sysusers}"
    );
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/embargod.service"
    ))
    .unwrap();
    for line in [
        "Type=notify",
        "User=embargod",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "StateDirectory=embargod",
        "UMask=0077",
    ] {
        assert!(unit.lines().any(|l| l == line), "missing {line}");
    }
}
