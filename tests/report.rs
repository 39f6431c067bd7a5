//! The report end to end: a tiny synthetic experiment run by the binary writes every chart (SVG
//! and PNG), a self-contained `index.html` and a `README.md`; `clbench report` rebuilds them from
//! the saved results alone, quickly; and a headless Chromium renders the page to something that
//! is not blank (skipped without Chromium, except in CI).

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const STRATEGIES: &str = "  - name: naive\n  - name: joint\n  - name: l2\n    lambda: [0.5, 5.0]\n  - name: ewc\n    lambda: 100.0\n  - name: hat\n";

use clbench::report::CHARTS;

fn clbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_clbench"))
        .args(args)
        .output()
        .expect("running clbench")
}

/// Runs the synthetic experiment `name` in `dir`; returns its report folder.
fn run_experiment(dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, common::synthetic_yaml(name, dir, STRATEGIES)).unwrap();
    let out = clbench(&["run", "--quiet", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir.join(name)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn check_outputs(folder: &Path) {
    for chart in CHARTS {
        for ext in ["svg", "png"] {
            let path = folder.join(format!("{chart}.{ext}"));
            assert!(size(&path) > 2000, "{} missing or tiny", path.display());
        }
        let svg = std::fs::read_to_string(folder.join(format!("{chart}.svg"))).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<text"), "{chart}.svg");
    }
    let html = std::fs::read_to_string(folder.join("index.html")).unwrap();
    assert!(html.len() > 20_000, "index.html is {} bytes", html.len());
    for loaded in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "<script",
        "@import",
        "url(",
    ] {
        assert!(
            !html.contains(loaded),
            "index.html loads something: {loaded}"
        );
    }
    assert_eq!(
        html.matches("<svg").count(),
        CHARTS.len(),
        "every chart inlined"
    );
    for text in [
        "<table",
        "ACC %",
        "BWT (points)",
        "forgetting (points)",
        "l2 lambda=0.5",
        "joint (upper bound)",
        "naive (lower bound)",
        "<b>",
        "Chosen configuration of each strategy",
        "selected on test data (optimistic)",
        "Paired comparisons",
        "More metrics",
        "FWT",
        "Lopez-Paz",
        "Chaudhry",
        "Machine, versions and time",
        "libtorch",
    ] {
        assert!(html.contains(text), "index.html lacks {text:?}");
    }
    // The experiment file, HTML-escaped, in a <pre>.
    let yaml = std::fs::read_to_string(folder.join("experiment.yaml")).unwrap();
    let first = yaml.lines().find(|l| l.contains("name:")).unwrap();
    assert!(html.contains("<pre>"), "no <pre>");
    assert!(html.contains(first.trim()), "index.html lacks {first:?}");
    let readme = std::fs::read_to_string(folder.join("README.md")).unwrap();
    for text in [
        "| configuration |",
        "**",
        "(final_metrics.png)",
        "(forgetting.png)",
        "(accuracy.png)",
        "(curves.png)",
    ] {
        assert!(readme.contains(text), "README.md lacks {text:?}:\n{readme}");
    }
}

#[test]
fn a_run_writes_every_chart_and_page_and_report_rebuilds_them() {
    let dir = tempfile::tempdir().unwrap();
    let folder = run_experiment(dir.path(), "rep");
    check_outputs(&folder);

    let mut removed = vec!["index.html".to_string(), "README.md".to_string()];
    removed.extend(CHARTS.iter().map(|c| format!("{c}.png")));
    removed.extend(CHARTS.iter().map(|c| format!("{c}.svg")));
    for file in &removed {
        std::fs::remove_file(folder.join(file)).unwrap();
    }
    let out = clbench(&["report", folder.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_outputs(&folder);
}

#[test]
fn report_of_sixty_jobs_takes_under_ten_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let folder = run_experiment(dir.path(), "fifty");
    // 6 configurations x 2 seeds run; copy each result to seeds 3..=10 for 60 jobs.
    let jobs = folder.join("jobs");
    let originals: Vec<PathBuf> = std::fs::read_dir(&jobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(originals.len(), 12);
    for path in &originals {
        let mut job: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if job["seed"] != 1 {
            continue;
        }
        let id = job["id"]
            .as_str()
            .unwrap()
            .trim_end_matches("seed1")
            .to_string();
        for seed in 3..=10u64 {
            job["seed"] = seed.into();
            job["id"] = format!("{id}seed{seed}").into();
            std::fs::write(
                jobs.join(format!("{id}seed{seed}.json")),
                serde_json::to_string(&job).unwrap(),
            )
            .unwrap();
        }
    }
    assert_eq!(std::fs::read_dir(&jobs).unwrap().count(), 60);
    let start = Instant::now();
    let out = clbench(&["report", folder.to_str().unwrap()]);
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(took < Duration::from_secs(10), "report took {took:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("10"), "{stdout}");
    check_outputs(&folder);
}

/// Runs `cmd`, killing it after `limit`; true when it exited successfully in time.
fn run_with_timeout(cmd: &mut Command, limit: Duration) -> bool {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn chromium_renders_the_page_offline_and_not_blank() {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        common::skip(
            "chromium_renders_the_page_offline_and_not_blank",
            "/usr/bin/chromium not found (apt-get install chromium to run this test)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let folder = run_experiment(dir.path(), "shot");
    let index = folder.join("index.html").canonicalize().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let shot = dir.path().join("shot.png");
    let ok = run_with_timeout(
        Command::new(chromium).args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            &format!("--user-data-dir={}", profile.path().display()),
            &format!("--screenshot={}", shot.display()),
            "--window-size=1200,2000",
            &format!("file://{}", index.display()),
        ]),
        Duration::from_secs(60),
    );
    assert!(ok && shot.exists(), "chromium did not write a screenshot");
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.bit_depth, png::BitDepth::Eight, "{info:?}");
    let channels = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(channels).collect();
    assert!(
        pixels.len() >= 1000 * 1000,
        "screenshot is {}x{}",
        info.width,
        info.height
    );
    let background = pixels[0];
    let differing = pixels.iter().filter(|p| **p != background).count();
    let share = differing as f64 / pixels.len() as f64;
    assert!(
        share > 0.01,
        "screenshot is blank: {:.3}% of pixels differ from the background",
        100.0 * share
    );
}
