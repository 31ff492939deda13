//! Terminal line charts (one marker per series) for `xp compare`, and the same curves drawn
//! to SVG or PNG files with plotters for `--plot`.

use std::path::Path;

use plotters::prelude::*;

/// One curve: a label and its (step, value) points, by step.
pub struct Series<'a> {
    pub label: String,
    pub points: &'a [(f64, f64)],
}

const MARKERS: [char; 8] = ['●', '○', '▲', '×', '◆', '+', '■', '□'];
/// Marks a cell where more than one series falls.
const SHARED: usize = usize::MAX;
const ANSI: [&str; 8] = ["31", "34", "32", "35", "33", "36", "91", "94"];

fn bounds(series: &[Series<'_>]) -> Option<((f64, f64), (f64, f64))> {
    let all = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.1.is_finite());
    let mut out: Option<((f64, f64), (f64, f64))> = None;
    for &(x, y) in all {
        let ((x0, x1), (y0, y1)) = out.get_or_insert(((x, x), (y, y)));
        *x0 = x0.min(x);
        *x1 = x1.max(x);
        *y0 = y0.min(y);
        *y1 = y1.max(y);
    }
    out
}

/// Draws the series into a `width` × `height` character grid with a y axis on the left,
/// the step range below and a legend; later series draw over earlier ones.
pub fn render(
    title: &str,
    series: &[Series<'_>],
    width: usize,
    height: usize,
    color: bool,
) -> String {
    let Some(((x0, x1), (y0, mut y1))) = bounds(series) else {
        return format!("{title}: no values recorded\n");
    };
    // The first tenth of the steps (the steep start) is clipped to the top row, so that the
    // height goes to where runs differ.
    let late = x0 + (x1 - x0) * 0.1;
    let late_max = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0 >= late && p.1.is_finite())
        .map(|p| p.1)
        .fold(f64::NEG_INFINITY, f64::max);
    let clipped = late_max.is_finite() && late_max > y0 && late_max < y1;
    if clipped {
        y1 = late_max;
    }
    let (width, height) = (width.max(10), height.max(3));
    // Each cell holds the series drawn there; a cell shared by several shows `*`.
    let mut grid: Vec<Vec<Option<usize>>> = vec![vec![None; width]; height];
    let mut shared = false;
    let span = |a: f64, b: f64| if b > a { b - a } else { 1.0 };
    for (i, s) in series.iter().enumerate() {
        for &(x, y) in s.points.iter().filter(|p| p.1.is_finite()) {
            let col = ((x - x0) / span(x0, x1) * (width - 1) as f64).round() as usize;
            let row = ((y1 - y.min(y1)) / span(y0, y1) * (height - 1) as f64).round() as usize;
            let cell = &mut grid[row.min(height - 1)][col.min(width - 1)];
            match cell {
                Some(j) if *j != i && *j != SHARED => {
                    *cell = Some(SHARED);
                    shared = true;
                }
                Some(SHARED) => {}
                _ => *cell = Some(i),
            }
        }
    }
    let label = |v: f64| format!("{v:.4}");
    let gutter = label(y0).len().max(label(y1).len()) + usize::from(clipped);
    let mut out = format!("{title}\n");
    for (r, row) in grid.iter().enumerate() {
        let axis = if r == 0 && clipped {
            format!("≥{}", label(y1))
        } else if r == 0 {
            label(y1)
        } else if r == height - 1 {
            label(y0)
        } else if r == height / 2 {
            label((y0 + y1) / 2.0)
        } else {
            String::new()
        };
        out.push_str(&format!("{axis:>gutter$} ┤"));
        for cell in row {
            match cell {
                Some(SHARED) => out.push('*'),
                Some(i) if color => out.push_str(&format!(
                    "\x1b[{}m{}\x1b[0m",
                    ANSI[i % ANSI.len()],
                    MARKERS[i % MARKERS.len()]
                )),
                Some(i) => out.push(MARKERS[i % MARKERS.len()]),
                None => out.push(' '),
            }
        }
        out.push('\n');
    }
    out.push_str(&format!("{:>gutter$} └{}\n", "", "─".repeat(width)));
    let (left, right) = (format!("step {x0}"), format!("{x1}"));
    out.push_str(&format!(
        "{:>gutter$}  {left}{right:>pad$}\n",
        "",
        pad = width.saturating_sub(left.chars().count())
    ));
    let mut legend: Vec<String> = series
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{} {}", MARKERS[i % MARKERS.len()], s.label))
        .collect();
    if shared {
        legend.push("* several".into());
    }
    out.push_str(&format!("{:>gutter$}  {}\n", "", legend.join("   ")));
    out
}

/// Tableau 10: distinct at a glance, and none too pale on white.
const TABLEAU: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

/// DejaVu Sans (Bitstream Vera licence, see fonts/LICENSE), embedded so that plots render the
/// same on a machine without fonts installed.
static FONT: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");

/// A run's curves for a plot file.
pub struct Curves<'a> {
    pub run: String,
    pub train: &'a [(f64, f64)],
    pub val: &'a [(f64, f64)],
}

/// Draws validation (thick, with markers) and training (thin) loss against step, one colour
/// per run, to an `.svg` or `.png` file.
pub fn plot(path: &Path, title: &str, runs: &[Curves<'_>]) -> Result<(), String> {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
    let series: Vec<Series<'_>> = runs
        .iter()
        .flat_map(|r| {
            [
                Series {
                    label: String::new(),
                    points: r.train,
                },
                Series {
                    label: String::new(),
                    points: r.val,
                },
            ]
        })
        .collect();
    let Some(((x0, x1), (y0, y1))) = bounds(&series) else {
        return Err("the runs have no train_loss or val_loss values to plot".into());
    };
    let size = (1000, 620);
    match path.extension().and_then(|e| e.to_str()) {
        Some("svg") => draw(
            SVGBackend::new(path, size).into_drawing_area(),
            title,
            runs,
            (x0, x1),
            (y0, y1),
        ),
        Some("png") => draw(
            BitMapBackend::new(path, size).into_drawing_area(),
            title,
            runs,
            (x0, x1),
            (y0, y1),
        ),
        _ => Err(format!(
            "cannot plot to {}: the file name must end in .svg or .png",
            path.display()
        )),
    }
}

fn draw<DB: DrawingBackend>(
    area: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    runs: &[Curves<'_>],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let err = |e: &dyn std::fmt::Display| e.to_string();
    area.fill(&WHITE).map_err(|e| err(&e))?;
    let pad = (y1 - y0).max(1e-6) * 0.05;
    let mut chart = ChartBuilder::on(&area)
        .caption(title, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .label_style(("sans-serif", 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, run) in runs.iter().enumerate() {
        let (r, g, b) = TABLEAU[i % TABLEAU.len()];
        let color = RGBColor(r, g, b).to_rgba();
        // Training loss faint and thin, validation loss solid with markers.
        let curves = [
            (run.train, "train", color.mix(0.45).stroke_width(1), 0),
            (run.val, "val", color.stroke_width(3), 3),
        ];
        for (points, what, style, marker) in curves {
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style).point_size(marker))
                .map_err(|e| err(&e))?
                .label(format!("{} {what}", run.run))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|e| err(&e))?;
    area.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_markers_axes_and_a_legend() {
        let a = [(0.0, 1.0), (5.0, 2.0), (10.0, 1.5)];
        let b = [(0.0, 1.0), (10.0, 2.0)];
        let series = [
            Series {
                label: "run-1".into(),
                points: &a,
            },
            Series {
                label: "run-2".into(),
                points: &b,
            },
        ];
        assert_eq!(
            render("loss", &series, 11, 3, false),
            "loss\n\
             2.0000 ┤     ●    ○\n\
             1.5000 ┤          ●\n\
             1.0000 ┤*          \n\
             \x20      └───────────\n\
             \x20       step 0   10\n\
             \x20       ● run-1   ○ run-2   * several\n"
        );
    }

    #[test]
    fn clips_the_steep_start_to_the_top_row() {
        let a: Vec<(f64, f64)> = (0..=100)
            .map(|s| (s as f64, 1.0 + 10.0 / (1.0 + s as f64)))
            .collect();
        let chart = render(
            "loss",
            &[Series {
                label: "run-1".into(),
                points: &a,
            }],
            20,
            5,
            false,
        );
        assert!(
            chart.lines().nth(1).unwrap().starts_with("≥1.9091 ┤"),
            "{chart}"
        );
    }
}
