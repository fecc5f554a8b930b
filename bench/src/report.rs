//! Figures, each next to its goal, printed as a table and as JSON.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Goal {
    /// The figure must be at most this.
    AtMost(f64),
    /// The figure must be at least this.
    AtLeast(f64),
}

impl Goal {
    fn met(self, value: f64) -> bool {
        match self {
            Goal::AtMost(g) => value <= g,
            Goal::AtLeast(g) => value >= g,
        }
    }

    fn text(self) -> String {
        match self {
            Goal::AtMost(g) => format!("<= {}", fmt_num(g)),
            Goal::AtLeast(g) => format!(">= {}", fmt_num(g)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    pub scenario: String,
    pub name: String,
    pub value: Option<f64>,
    pub unit: String,
    pub goal: Option<Goal>,
    /// `Some(true/false)` when there is a goal and a value.
    pub met: Option<bool>,
    pub note: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub figures: Vec<Figure>,
    /// Scenarios that could not run, with why.
    pub skipped: Vec<(String, String)>,
}

impl Report {
    pub fn add(
        &mut self,
        scenario: &str,
        name: &str,
        value: Option<f64>,
        unit: &str,
        goal: Option<Goal>,
        note: impl Into<String>,
    ) {
        let met = match (goal, value) {
            (Some(g), Some(v)) => Some(g.met(v)),
            _ => None,
        };
        self.figures.push(Figure {
            scenario: scenario.to_owned(),
            name: name.to_owned(),
            value,
            unit: unit.to_owned(),
            goal,
            met,
            note: note.into(),
        });
    }

    /// A figure with no goal.
    pub fn info(&mut self, scenario: &str, name: &str, value: Option<f64>, unit: &str) {
        self.add(scenario, name, value, unit, None, "");
    }

    pub fn skip(&mut self, scenario: &str, why: impl Into<String>) {
        self.skipped.push((scenario.to_owned(), why.into()));
    }

    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 5]> = vec![[
            "scenario".into(),
            "figure".into(),
            "value".into(),
            "goal".into(),
            "ok".into(),
        ]];
        for f in &self.figures {
            let value = match f.value {
                Some(v) => format!("{} {}", fmt_num(v), f.unit),
                None => "n/a".to_owned(),
            };
            let goal = f
                .goal
                .map(|g| format!("{} {}", g.text(), f.unit))
                .unwrap_or_default();
            let ok = match f.met {
                Some(true) => "yes".to_owned(),
                Some(false) => "MISSED".to_owned(),
                None => String::new(),
            };
            let name = if f.note.is_empty() {
                f.name.clone()
            } else {
                format!("{} ({})", f.name, f.note)
            };
            rows.push([f.scenario.clone(), name, value, goal, ok]);
        }
        let mut widths = [0usize; 5];
        for r in &rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let mut out = String::new();
        for (i, r) in rows.iter().enumerate() {
            let line: Vec<String> = r
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            out.push_str(line.join(" | ").trim_end());
            out.push('\n');
            if i == 0 {
                let sep: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                out.push_str(&sep.join("-+-"));
                out.push('\n');
            }
        }
        for (s, why) in &self.skipped {
            out.push_str(&format!("skipped {s}: {why}\n"));
        }
        out
    }
}

pub fn fmt_num(v: f64) -> String {
    if (v == v.trunc() && v.abs() < 1e12) || v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goals_are_judged_and_printed() {
        let mut r = Report::default();
        r.add(
            "latency",
            "overhead p50",
            Some(25.0),
            "us",
            Some(Goal::AtMost(30.0)),
            "",
        );
        r.add(
            "pool",
            "utilization",
            Some(0.9),
            "",
            Some(Goal::AtLeast(0.95)),
            "M=N",
        );
        r.info("memory", "gateway RSS", None, "MiB");
        assert_eq!(r.figures[0].met, Some(true));
        assert_eq!(r.figures[1].met, Some(false));
        assert_eq!(r.figures[2].met, None);
        let t = r.table();
        assert!(t.contains("MISSED") && t.contains("<= 30 us") && t.contains("n/a"));
    }
}
