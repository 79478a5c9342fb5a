//! The bench's one table and its JSON: each row is a case with routed6d's figure,
//! iproute2's where it applies, their ratio, the target and pass/fail. The previous
//! run's JSON is kept so a figure can be compared with the last run.

use serde::{Deserialize, Serialize};

/// One line of the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Row {
    pub case: String,
    /// routed6d's figure, as printed (unit included).
    pub routed6d: String,
    /// The same figure as a number, for comparing runs.
    pub value: f64,
    pub iproute2: Option<String>,
    /// routed6d / iproute2 where both are times.
    pub ratio: Option<f64>,
    pub target: String,
    /// None: reported, no target to pass.
    pub pass: Option<bool>,
    /// Counts and context (requests, p99, how it was measured).
    pub note: String,
}

impl Row {
    pub fn info(case: impl Into<String>, routed6d: impl Into<String>, value: f64) -> Row {
        Row {
            case: case.into(),
            routed6d: routed6d.into(),
            value,
            iproute2: None,
            ratio: None,
            target: "-".into(),
            pass: None,
            note: String::new(),
        }
    }

    pub fn target(mut self, target: impl Into<String>, pass: bool) -> Row {
        self.target = target.into();
        self.pass = Some(pass);
        self
    }

    pub fn versus(mut self, iproute2_ms: f64) -> Row {
        self.iproute2 = Some(ms(iproute2_ms));
        self.ratio = Some(self.value / iproute2_ms);
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = note.into();
        self
    }
}

/// Milliseconds as the table prints them.
pub fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.2} ms")
    }
}

/// The machine the figures come from.
#[derive(Debug, Serialize, Deserialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: String,
    pub kernel: String,
    pub iproute2: String,
    /// /proc/loadavg when the run ended: other work on the machine skews times.
    pub load: String,
}

impl Machine {
    pub fn this() -> Machine {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default();
        let iproute2 = routed6d_sim::netns::run("ip", &["-V"])
            .map(|v| v.trim().to_string())
            .unwrap_or_default();
        let load = std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        Machine {
            load,
            nproc: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            kernel,
            iproute2,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Run {
    machine: Machine,
    /// Seconds since the epoch.
    when: u64,
    rows: Vec<Row>,
}

/// Print the table (with the previous run's figure per case) and save the JSON.
pub fn finish(rows: &[Row]) {
    let dir = crate::target_dir().join("bench");
    let latest = dir.join("latest.json");
    let previous: Option<Run> = std::fs::read(&latest)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let machine = Machine::this();
    println!();
    println!(
        "routed6d bench: {} CPU(s), {}, Linux {}, {}; load {}",
        machine.nproc, machine.cpu, machine.kernel, machine.iproute2, machine.load
    );
    println!(
        "{}",
        table(rows, previous.as_ref().map(|p| p.rows.as_slice()))
    );
    let run = Run {
        machine,
        when: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        rows: rows.to_vec(),
    };
    let saved = std::fs::create_dir_all(&dir)
        .and_then(|()| {
            if latest.exists() {
                std::fs::rename(&latest, dir.join("previous.json"))?;
            }
            Ok(())
        })
        .and_then(|()| {
            let text = serde_json::to_vec_pretty(&run).map_err(std::io::Error::other)?;
            std::fs::write(&latest, text)
        });
    match saved {
        Ok(()) => println!("saved {}", latest.display()),
        Err(e) => eprintln!("cannot save {}: {e}", latest.display()),
    }
}

/// The table as Markdown (the README carries it as printed).
pub fn table(rows: &[Row], previous: Option<&[Row]>) -> String {
    let mut out = String::from(
        "| case | routed6d | iproute2 | ratio | target | result | previous | note |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let before = previous
            .and_then(|p| p.iter().find(|r| r.case == row.case))
            .map(|r| r.routed6d.clone())
            .unwrap_or_else(|| "-".into());
        let result = match row.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "-",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.case,
            row.routed6d,
            row.iproute2.as_deref().unwrap_or("-"),
            row.ratio.map_or("-".into(), |r| format!("{r:.2}×")),
            row.target,
            result,
            before,
            row.note,
        ));
    }
    out
}
