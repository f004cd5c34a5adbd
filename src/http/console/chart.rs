//! The auditor's chart: events per hour by outcome as a small stacked-bar SVG, drawn inline in
//! the page (markup, not script: the strict policy allows it), so a spike of refusals stands
//! out. Counting is done here over events already read; no query of its own.

use chrono::{DateTime, Duration, DurationRound, Utc};
use maud::{Markup, html};

/// Outcomes in stacking order, with their colours (the stylesheet's swatches match).
const OUTCOMES: [(&str, &str); 3] = [("success", "#1a7f37"), ("failure", "#d4a72c"), ("denied", "#b42318")];

/// The drawing's width and the bars' baseline, in its own units (see `svg`).
const WIDTH: f64 = 440.0;
const HEIGHT: f64 = 130.0;
/// The band above the bars that holds the "max N/h" label: bars start below it.
const TOP: f64 = 22.0;
/// Labels' size in the drawing's units.
const LABEL_FONT: f64 = 14.0;

/// Counts per hour for the `hours` hours ending with the current one.
pub struct Histogram {
    start: DateTime<Utc>,
    /// [success, failure, denied] per hour, oldest first.
    buckets: Vec<[u32; 3]>,
}

impl Histogram {
    pub fn new(now: DateTime<Utc>, hours: usize) -> Histogram {
        let current = now.duration_trunc(Duration::hours(1)).unwrap_or(now);
        let span = i64::try_from(hours.saturating_sub(1)).unwrap_or(0);
        Histogram { start: current - Duration::hours(span), buckets: vec![[0; 3]; hours] }
    }

    /// The earliest time counted.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn add(&mut self, at: DateTime<Utc>, outcome: &str) {
        let Ok(hour) = usize::try_from((at - self.start).num_hours()) else { return };
        let Some(slot) = OUTCOMES.iter().position(|(name, _)| *name == outcome) else { return };
        if at >= self.start
            && let Some(bucket) = self.buckets.get_mut(hour)
        {
            bucket[slot] += 1;
        }
    }

    /// The chart, with a title and a text summary for screen readers.
    ///
    /// Sized for a phone first: the SVG scales with its box, so its labels' font size is in
    /// the drawing's own units. Drawn 440 units wide, a 14-unit label reads at about 11.6 px
    /// in a phone's 366 px wide column (390 px screen less the page's padding), where the
    /// earlier 720-unit drawing with 11-unit labels gave 5.6 px; the stylesheet caps the
    /// chart at 560 px wide, so on a desktop the same label is about 18 px, not a headline.
    /// The "max N/h" label sits in a band above the bars' area (`TOP`), so the tallest bar,
    /// often the newest hour's, can never run into it.
    pub fn svg(&self) -> Markup {
        let (width, height) = (WIDTH, HEIGHT);
        let max = self.buckets.iter().map(|b| b.iter().sum::<u32>()).max().unwrap_or(0).max(1);
        let n = self.buckets.len().max(1) as f64;
        let slot = width / n;
        let totals: [u32; 3] = self.buckets.iter().fold([0; 3], |acc, b| [acc[0] + b[0], acc[1] + b[1], acc[2] + b[2]]);
        let summary = format!(
            "Events per hour over the last {} hours: {} success, {} failure, {} denied; busiest hour {} events.",
            self.buckets.len(),
            totals[0],
            totals[1],
            totals[2],
            max
        );
        let mut bars = Vec::new();
        for (i, bucket) in self.buckets.iter().enumerate() {
            let x = i as f64 * slot + 0.5;
            let mut y = height;
            for (k, (name, colour)) in OUTCOMES.iter().enumerate() {
                if bucket[k] > 0 {
                    let h = f64::from(bucket[k]) / f64::from(max) * (height - TOP);
                    y -= h;
                    let label = format!("{}: {} {}", self.hour_label(i), bucket[k], name);
                    bars.push((format!("{x:.1}"), format!("{y:.1}"), format!("{h:.1}"), *colour, label));
                }
            }
        }
        let bar_width = format!("{:.1}", (slot - 1.0).max(1.0));
        html! {
            figure.chart {
                svg viewBox=(format!("0 0 {width} {}", height + LABEL_FONT + 8.0)) role="img" aria-label=(summary) {
                    title { (summary) }
                    line x1="0" y1=(TOP) x2=(width) y2=(TOP) stroke="#e3e8ed" {}
                    line x1="0" y1=(height) x2=(width) y2=(height) stroke="#aab4be" {}
                    @for (x, y, h, colour, label) in &bars {
                        rect x=(x) y=(y) width=(bar_width) height=(h) fill=(colour) { title { (label) } }
                    }
                    @for i in (0..self.buckets.len()).step_by(6) {
                        text.axis x=(format!("{:.1}", i as f64 * slot + 0.5)) y=(height + LABEL_FONT + 2.0) font-size=(LABEL_FONT) fill="#5b6570" {
                            (self.hour_label(i))
                        }
                    }
                    text.max x=(width) y=(TOP - 5.0) font-size=(LABEL_FONT) fill="#5b6570" text-anchor="end" { "max " (max) "/h" }
                }
                figcaption.legend {
                    @for (name, _) in OUTCOMES { span { span class=(format!("swatch {name}")) {} (name) } }
                    span.muted { "hours in UTC" }
                }
            }
        }
    }

    fn hour_label(&self, i: usize) -> String {
        (self.start + Duration::hours(i64::try_from(i).unwrap_or(0))).format("%H:00").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fall_in_their_hour_and_outside_ones_are_dropped() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T10:30:00Z").expect("time").with_timezone(&Utc);
        let mut h = Histogram::new(now, 24);
        h.add(now, "denied");
        h.add(now - Duration::hours(23), "success");
        h.add(now - Duration::hours(30), "success"); // before the window
        h.add(now, "weird");
        assert_eq!(h.buckets[23], [0, 0, 1]);
        assert_eq!(h.buckets[0], [1, 0, 0]);
        assert_eq!(h.buckets.iter().flatten().sum::<u32>(), 2);
        assert!(h.svg().into_string().contains("1 denied"));
    }
}
