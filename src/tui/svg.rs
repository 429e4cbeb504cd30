//! A rendered frame as an SVG image, for the README's screenshots: one monospace grid cell per
//! buffer cell, a rectangle behind every run of cells with the same background, and the text
//! in runs of the same style, each character placed on its cell so that the grid holds
//! whatever font the viewer picks. Colours as an xterm shows them; `Reset` is the theme's
//! base colour. The output depends on the buffer alone, so the same frame gives the same bytes.

use std::fmt::Write as _;

use ratatui::buffer::{Buffer, Cell, CellDiffOption};
use ratatui::style::{Color, Modifier};

use crate::config::theme::{Role, Theme};

/// Cell width and height, font size and baseline offset within a cell, in pixels. The cell is
/// as wide as a glyph of DejaVu Sans Mono / Menlo (1233/2048 em), so that a renderer that
/// honours only the first of a run's x positions (librsvg) still keeps the grid.
const CELL_W: f64 = FONT_SIZE * 1233.0 / 2048.0;
const CELL_H: f64 = 19.0;
const FONT_SIZE: f64 = 16.0;
const BASELINE: f64 = 15.0;
/// Room around the grid, in the base background.
const PAD: f64 = 10.0;
const FONTS: &str = "ui-monospace, SFMono-Regular, Menlo, Consolas, 'DejaVu Sans Mono', 'Liberation Mono', monospace";

/// What `Reset` stands for when the theme's base style sets no colour.
const DEFAULT_FG: (u8, u8, u8) = (0xe5, 0xe5, 0xe5);
const DEFAULT_BG: (u8, u8, u8) = (0x00, 0x00, 0x00);

/// The whole buffer as an SVG document, with `theme`'s base colours for `Reset`.
pub fn render(buffer: &Buffer, theme: &Theme) -> String {
    let base = theme.style(Role::Base);
    let fg = base.fg.and_then(rgb).unwrap_or(DEFAULT_FG);
    let bg = base.bg.and_then(rgb).unwrap_or(DEFAULT_BG);
    render_with(buffer, fg, bg)
}

/// [`render`] with explicit default colours.
pub fn render_with(buffer: &Buffer, default_fg: (u8, u8, u8), default_bg: (u8, u8, u8)) -> String {
    let area = buffer.area;
    let width = PAD * 2.0 + CELL_W * f64::from(area.width);
    let height = PAD * 2.0 + CELL_H * f64::from(area.height);
    let mut out = String::with_capacity(64 * 1024);
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONTS}" font-size="{fs}">"#,
        w = num(width),
        h = num(height),
        fs = num(FONT_SIZE),
    );
    out.push('\n');
    let _ = writeln!(out, r#"<rect width="100%" height="100%" rx="6" fill="{}"/>"#, hex(default_bg));

    let cells: Vec<Vec<Look>> = (0..area.height)
        .map(|y| (0..area.width).map(|x| Look::of(&buffer[(area.x + x, area.y + y)], default_fg, default_bg)).collect())
        .collect();

    // Backgrounds: one rectangle per run of cells with the same colour, unless it is the base.
    out.push_str("<g shape-rendering=\"crispEdges\">\n");
    for (row, looks) in cells.iter().enumerate() {
        let mut col = 0;
        while col < looks.len() {
            let bg = looks[col].bg;
            let start = col;
            while col < looks.len() && looks[col].bg == bg {
                col += 1;
            }
            if bg != default_bg {
                let _ = writeln!(
                    out,
                    r#"<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>"#,
                    num(PAD + CELL_W * start as f64),
                    num(PAD + CELL_H * row as f64),
                    num(CELL_W * (col - start) as f64),
                    num(CELL_H),
                    hex(bg)
                );
            }
        }
    }
    out.push_str("</g>\n");

    // Text: runs of non-blank cells with the same look; blanks need no glyph.
    out.push_str("<g xml:space=\"preserve\">\n");
    for (row, looks) in cells.iter().enumerate() {
        let y = PAD + CELL_H * row as f64 + BASELINE;
        let mut col = 0;
        while col < looks.len() {
            if looks[col].blank() {
                col += 1;
                continue;
            }
            let start = col;
            col += 1;
            // Only characters every monospace font draws on the grid share a run; any other
            // cell (braille, symbols, a combining mark) stands alone, so that a renderer that
            // ignores the x list past its first value still puts it on its cell.
            if looks[start].gridded() {
                while col < looks.len()
                    && !looks[col].blank()
                    && looks[col].gridded()
                    && looks[col].same_text_style(&looks[start])
                {
                    col += 1;
                }
            }
            text_run(&mut out, &looks[start..col], start, y);
        }
    }
    out.push_str("</g>\n</svg>\n");
    out
}

fn text_run(out: &mut String, run: &[Look], start: usize, y: f64) {
    let first = &run[0];
    let xs: Vec<String> = (0..run.len()).map(|i| num(PAD + CELL_W * (start + i) as f64)).collect();
    let _ = write!(out, r#"<text x="{}" y="{}" fill="{}""#, xs.join(" "), num(y), hex(first.fg));
    let m = first.modifier;
    if m.contains(Modifier::BOLD) {
        out.push_str(r#" font-weight="bold""#);
    }
    if m.contains(Modifier::ITALIC) {
        out.push_str(r#" font-style="italic""#);
    }
    if m.contains(Modifier::DIM) {
        out.push_str(r#" fill-opacity="0.6""#);
    }
    let decorations: Vec<&str> = [(Modifier::UNDERLINED, "underline"), (Modifier::CROSSED_OUT, "line-through")]
        .into_iter()
        .filter(|(flag, _)| m.contains(*flag))
        .map(|(_, d)| d)
        .collect();
    if !decorations.is_empty() {
        let _ = write!(out, r#" text-decoration="{}""#, decorations.join(" "));
    }
    out.push('>');
    for look in run {
        escape_into(out, &look.symbol);
    }
    out.push_str("</text>\n");
}

/// A cell as drawn: its text, and its colours with `Reset` and `REVERSED` resolved.
struct Look {
    symbol: String,
    fg: (u8, u8, u8),
    bg: (u8, u8, u8),
    modifier: Modifier,
}

impl Look {
    fn of(cell: &Cell, default_fg: (u8, u8, u8), default_bg: (u8, u8, u8)) -> Self {
        let mut fg = rgb(cell.fg).unwrap_or(default_fg);
        let mut bg = rgb(cell.bg).unwrap_or(default_bg);
        if cell.modifier.contains(Modifier::REVERSED) {
            std::mem::swap(&mut fg, &mut bg);
        }
        let hidden = cell.diff_option == CellDiffOption::Skip || cell.modifier.contains(Modifier::HIDDEN);
        let symbol = if hidden { String::new() } else { cell.symbol().chars().filter(|c| !c.is_control()).collect() };
        Self { symbol, fg, bg, modifier: cell.modifier }
    }

    fn blank(&self) -> bool {
        self.symbol.trim().is_empty() && !self.modifier.intersects(Modifier::UNDERLINED | Modifier::CROSSED_OUT)
    }

    /// One character from the ranges monospace fonts carry at their own advance: ASCII,
    /// Latin, box drawing and block elements.
    fn gridded(&self) -> bool {
        let mut chars = self.symbol.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => matches!(c, ' '..='~' | '\u{a0}'..='\u{24f}' | '\u{2500}'..='\u{259f}'),
            _ => false,
        }
    }

    fn same_text_style(&self, other: &Look) -> bool {
        const TEXT: Modifier = Modifier::BOLD
            .union(Modifier::ITALIC)
            .union(Modifier::DIM)
            .union(Modifier::UNDERLINED)
            .union(Modifier::CROSSED_OUT);
        self.fg == other.fg && (self.modifier & TEXT) == (other.modifier & TEXT)
    }
}

/// A colour as an xterm draws it; `None` for `Reset`.
pub fn rgb(color: Color) -> Option<(u8, u8, u8)> {
    Some(match color {
        Color::Reset => return None,
        Color::Black => xterm(0),
        Color::Red => xterm(1),
        Color::Green => xterm(2),
        Color::Yellow => xterm(3),
        Color::Blue => xterm(4),
        Color::Magenta => xterm(5),
        Color::Cyan => xterm(6),
        Color::Gray => xterm(7),
        Color::DarkGray => xterm(8),
        Color::LightRed => xterm(9),
        Color::LightGreen => xterm(10),
        Color::LightYellow => xterm(11),
        Color::LightBlue => xterm(12),
        Color::LightMagenta => xterm(13),
        Color::LightCyan => xterm(14),
        Color::White => xterm(15),
        Color::Indexed(n) => xterm(n),
        Color::Rgb(r, g, b) => (r, g, b),
    })
}

/// xterm's 256-colour palette: 16 system colours, a 6×6×6 cube, 24 greys.
pub fn xterm(n: u8) -> (u8, u8, u8) {
    const SYSTEM: [(u8, u8, u8); 16] = [
        (0x00, 0x00, 0x00),
        (0xcd, 0x00, 0x00),
        (0x00, 0xcd, 0x00),
        (0xcd, 0xcd, 0x00),
        (0x00, 0x00, 0xee),
        (0xcd, 0x00, 0xcd),
        (0x00, 0xcd, 0xcd),
        (0xe5, 0xe5, 0xe5),
        (0x7f, 0x7f, 0x7f),
        (0xff, 0x00, 0x00),
        (0x00, 0xff, 0x00),
        (0xff, 0xff, 0x00),
        (0x5c, 0x5c, 0xff),
        (0xff, 0x00, 0xff),
        (0x00, 0xff, 0xff),
        (0xff, 0xff, 0xff),
    ];
    const LEVELS: [u8; 6] = [0x00, 0x5f, 0x87, 0xaf, 0xd7, 0xff];
    match n {
        0..=15 => SYSTEM[n as usize],
        16..=231 => {
            let i = n - 16;
            (LEVELS[(i / 36) as usize], LEVELS[(i / 6 % 6) as usize], LEVELS[(i % 6) as usize])
        }
        _ => {
            let v = 8 + 10 * (n - 232);
            (v, v, v)
        }
    }
}

fn hex((r, g, b): (u8, u8, u8)) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// A coordinate with at most two decimals and no trailing zeros.
fn num(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `text` with XML's special characters escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(&mut out, text);
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::tui::app::Pane;
    use crate::tui::{fixture, view};

    fn svg_of(pane: Pane, filter_text: Option<&str>) -> String {
        let theme = Theme::embedded("dark").unwrap();
        let mut app = fixture::demo_app(theme.clone());
        app.pane = pane;
        if let Some(t) = filter_text {
            app.message = Some((t.to_string(), crate::tui::app::Tone::Info));
        }
        let mut term = Terminal::new(TestBackend::new(160, 48)).unwrap();
        term.draw(|f| view::draw(f, &app)).unwrap();
        render(term.backend().buffer(), &theme)
    }

    #[test]
    fn a_pane_becomes_a_well_formed_svg_with_its_text_escaped() {
        let svg = svg_of(Pane::Flags, Some("a&b <c>"));
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        // Text runs split at blanks, so look for the title's words.
        assert!(svg.contains(">Flags<") && svg.contains(">(flagd<"), "no pane title");
        assert!(svg.contains(">a&amp;b<") && svg.contains(">&lt;c&gt;<"), "text not escaped");
        assert!(!svg.contains("a&b") && !svg.contains("<c>"));
        // Every element opened is closed.
        assert_eq!(svg.matches("<text ").count(), svg.matches("</text>").count());
        assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
        // The theme's base background fills the image.
        assert!(svg.contains(r##"fill="#1a1b26""##));
    }

    #[test]
    fn the_same_frame_gives_the_same_bytes() {
        assert_eq!(svg_of(Pane::Analysis, None), svg_of(Pane::Analysis, None));
    }

    #[test]
    fn colours_map_to_the_xterm_palette() {
        assert_eq!(rgb(Color::Reset), None);
        assert_eq!(rgb(Color::Red), Some((0xcd, 0, 0)));
        assert_eq!(rgb(Color::Indexed(9)), Some((0xff, 0, 0)));
        assert_eq!(rgb(Color::Indexed(16)), Some((0, 0, 0)));
        assert_eq!(rgb(Color::Indexed(196)), Some((0xff, 0, 0)));
        assert_eq!(rgb(Color::Indexed(231)), Some((0xff, 0xff, 0xff)));
        assert_eq!(rgb(Color::Indexed(232)), Some((8, 8, 8)));
        assert_eq!(rgb(Color::Indexed(255)), Some((0xee, 0xee, 0xee)));
        assert_eq!(rgb(Color::Rgb(1, 2, 3)), Some((1, 2, 3)));
        assert_eq!(escape(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&apos;");
    }
}
