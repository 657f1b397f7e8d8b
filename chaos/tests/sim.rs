//! The deterministic simulation runs, passes its checkers, and replays:
//! each schedule runs twice (`--twice`) and must take the same path.

use std::process::Command;

#[test]
fn simulated_schedules_pass_and_replay() {
    let out = Command::new(env!("CARGO_BIN_EXE_zkit-chaos"))
        .args([
            "sim",
            "--schedules",
            "12",
            "--seed",
            "77",
            "--jobs",
            "2",
            "--twice",
        ])
        .output()
        .expect("run zkit-chaos sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("12 passed, 0 failed"),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The totals line counts what the schedules did: faults, requests,
    // sessions (some expired), watch events.
    let totals: serde_json::Value = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("a totals line");
    for key in [
        "faults",
        "creates_acked",
        "sessions_expired",
        "persistent_events",
    ] {
        assert!(totals[key].as_u64().unwrap_or(0) > 0, "{key} in {totals}");
    }
}

#[test]
fn a_bad_argument_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_zkit-chaos"))
        .args(["sim", "--schedules", "many"])
        .output()
        .expect("run zkit-chaos sim");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--schedules"));
}
