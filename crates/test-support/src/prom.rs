//! A small reader of the Prometheus text format: enough to read gauges, counters and
//! histogram quantiles off `/metrics`.

use anyhow::{Context, Result};
use std::time::Duration;

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub samples: Vec<Sample>,
}

impl Metrics {
    pub async fn scrape(url: &str, bearer: Option<&str>) -> Result<Self> {
        let mut req = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        let text = req
            .send()
            .await
            .with_context(|| format!("GET {url}"))?
            .error_for_status()?
            .text()
            .await?;
        Ok(Self::parse(&text))
    }

    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Self { samples }
    }

    /// Sum over every label set of `name`; `None` when absent.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let total = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .inspect(|_| found = true)
            .map(|s| s.value)
            .sum();
        found.then_some(total)
    }

    /// Sum over the samples of `name` whose label `key` is `value`.
    pub fn sum_where(&self, name: &str, key: &str, value: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && s.label(key) == Some(value))
            .map(|s| s.value)
            .sum()
    }

    /// First metric name that contains every one of `parts` (metric names are not all
    /// fixed by a contract; e.g. the sidecar's open-stream gauge).
    pub fn find_name(&self, parts: &[&str]) -> Option<&str> {
        self.samples
            .iter()
            .map(|s| s.name.as_str())
            .find(|n| parts.iter().all(|p| n.contains(p)))
    }

    /// Cumulative buckets (upper bound, count) of histogram `name` (without `_bucket`),
    /// summed over label sets.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut out: Vec<(f64, f64)> = Vec::new();
        for s in self.samples.iter().filter(|s| s.name == bucket) {
            let Some(le) = s.label("le").and_then(parse_float) else {
                continue;
            };
            match out.iter_mut().find(|(b, _)| *b == le) {
                Some(entry) => entry.1 += s.value,
                None => out.push((le, s.value)),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// Quantile `q` of histogram `name` by linear interpolation inside the bucket (what
    /// `histogram_quantile` does), or `None` with no observations.
    pub fn quantile(&self, name: &str, q: f64) -> Option<f64> {
        histogram_quantile(&self.buckets(name), q)
    }
}

/// Difference of two scrapes of one histogram's buckets (observations made in between).
pub fn bucket_delta(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, n)| {
            let old = before
                .iter()
                .find(|(b, _)| b == le)
                .map(|(_, v)| *v)
                .unwrap_or(0.0);
            (*le, n - old)
        })
        .collect()
}

pub fn histogram_quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut prev_le = 0.0;
    let mut prev_count = 0.0;
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(prev_le);
            }
            let in_bucket = count - prev_count;
            let frac = if in_bucket > 0.0 {
                (rank - prev_count) / in_bucket
            } else {
                0.0
            };
            return Some(prev_le + (le - prev_le) * frac);
        }
        prev_le = le;
        prev_count = count;
    }
    Some(prev_le)
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (head, rest) = match line.find('{') {
        Some(_) => {
            let close = line.rfind('}')?;
            (&line[..close + 1], &line[close + 1..])
        }
        None => {
            let sp = line.find(char::is_whitespace)?;
            (&line[..sp], &line[sp..])
        }
    };
    let value = parse_float(rest.split_whitespace().next()?)?;
    let (name, labels) = match head.find('{') {
        Some(open) => (&head[..open], parse_labels(&head[open + 1..head.len() - 1])),
        None => (head, Vec::new()),
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(eq) = rest.find('=') {
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_owned();
        let after = &rest[eq + 1..];
        let Some(body) = after.strip_prefix('"') else {
            break;
        };
        let mut value = String::new();
        let mut chars = body.char_indices();
        let mut end = body.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, n)) = chars.next() {
                        value.push(match n {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                other => value.push(other),
            }
        }
        out.push((key, value));
        rest = &body[end.min(body.len())..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP gateway_in_flight x
# TYPE gateway_in_flight gauge
gateway_in_flight 3
gateway_pool_instance_in_flight{name="a"} 1
gateway_pool_instance_in_flight{name="b,c"} 2
h_bucket{le="0.001"} 5
h_bucket{le="0.01"} 10
h_bucket{le="+Inf"} 10
h_sum 0.02
h_count 10
"#;

    #[test]
    fn reads_gauges_labels_and_quantiles() {
        let m = Metrics::parse(TEXT);
        assert_eq!(m.sum("gateway_in_flight"), Some(3.0));
        assert_eq!(m.sum("gateway_pool_instance_in_flight"), Some(3.0));
        assert_eq!(
            m.sum_where("gateway_pool_instance_in_flight", "name", "b,c"),
            2.0
        );
        assert_eq!(m.sum("absent"), None);
        let p50 = m.quantile("h", 0.5).expect("has observations");
        assert!((p50 - 0.001).abs() < 1e-9, "{p50}");
        let p75 = m.quantile("h", 0.75).expect("has observations");
        assert!((p75 - 0.0055).abs() < 1e-9, "{p75}");
    }
}
