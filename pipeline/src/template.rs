//! Path and argument templates: `{night}`, `{expid:08d}`, `{file:frame}` (DESI file name from
//! `spx::io::findfile` with the task's night/expid/camera/spectrograph/tile), and in
//! arguments `{inputs.NAME}` / `{outputs.NAME}` (a list: the argument repeats per element).
//! `{{` and `}}` are literal braces. Templates are parsed once per stage, rendered per task.

use spx::io::findfile::{relpath, FileId, FileKind};

/// Where a variable's value comes from while rendering.
pub trait Vars {
    /// The value of `name`, if bound.
    fn get(&self, name: &str) -> Option<&str>;
}

impl Vars for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, name).map(String::as_str)
    }
}

impl Vars for std::collections::BTreeMap<std::rc::Rc<str>, std::rc::Rc<str>> {
    fn get(&self, name: &str) -> Option<&str> {
        std::collections::BTreeMap::get(self, name).map(|v| &**v)
    }
}

/// Task bindings first, then the pipeline's variables.
pub struct Layered<'a, A: Vars + ?Sized, B: Vars + ?Sized>(pub &'a A, pub &'a B);

impl<A: Vars + ?Sized, B: Vars + ?Sized> Vars for Layered<'_, A, B> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).or_else(|| self.1.get(name))
    }
}

/// Which list of a task an argument refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    /// `{inputs.NAME}`
    Inputs,
    /// `{outputs.NAME}`
    Outputs,
}

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Lit(String),
    /// A variable, zero-padded to `width` digits when formatted `:0Nd`.
    Var {
        name: String,
        int_width: Option<(usize, bool)>,
    },
    File(FileKind),
    List(ListKind, String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    src: String,
    segs: Vec<Seg>,
}

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// A variable the template needs is not bound (its name).
    Unbound(String),
    /// A bound value is unusable (e.g. `expid` is not an integer), or a list is used where
    /// only a single value can go.
    Bad(String),
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RenderError::Unbound(v) => write!(f, "missing variable {{{v}}}"),
            RenderError::Bad(m) => f.write_str(m),
        }
    }
}

impl Template {
    /// Parses `src`; the error is one line naming the problem.
    pub fn parse(src: &str) -> Result<Template, String> {
        let mut segs = Vec::new();
        let mut lit = String::new();
        let mut chars = src.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '}' => return Err(format!("template {src:?}: unmatched '}}'")),
                '{' => {
                    let mut body = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => body.push(c),
                            None => return Err(format!("template {src:?}: unclosed '{{'")),
                        }
                    }
                    if !lit.is_empty() {
                        segs.push(Seg::Lit(std::mem::take(&mut lit)));
                    }
                    segs.push(parse_placeholder(src, &body)?);
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            segs.push(Seg::Lit(lit));
        }
        Ok(Template {
            src: src.to_string(),
            segs,
        })
    }

    /// The template text as written.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Whether the template refers to `{inputs.X}` or `{outputs.X}`.
    pub fn has_list(&self) -> bool {
        self.segs.iter().any(|s| matches!(s, Seg::List(..)))
    }

    /// The names of the variables the template uses directly (not through `{file:…}`).
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            Seg::Var { name, .. } => Some(name.as_str()),
            _ => None,
        })
    }

    /// Renders a template without list placeholders.
    pub fn render(&self, vars: &dyn Vars) -> Result<String, RenderError> {
        let mut out = String::with_capacity(self.src.len() + 32);
        for seg in &self.segs {
            match seg {
                Seg::List(..) => {
                    return Err(RenderError::Bad(format!(
                        "template {:?}: {{inputs.…}}/{{outputs.…}} only go in args and options",
                        self.src
                    )))
                }
                other => render_seg(other, vars, &mut out)?,
            }
        }
        Ok(out)
    }

    /// Renders an argument: without a list placeholder one string; with one, one string per
    /// element of that list (prefix and suffix repeated), possibly none.
    pub fn render_list<'l>(
        &self,
        vars: &dyn Vars,
        lists: &dyn Fn(ListKind, &str) -> Option<&'l [String]>,
    ) -> Result<Vec<String>, RenderError> {
        let Some(pos) = self.segs.iter().position(|s| matches!(s, Seg::List(..))) else {
            return Ok(vec![self.render(vars)?]);
        };
        if self.segs[pos + 1..]
            .iter()
            .any(|s| matches!(s, Seg::List(..)))
        {
            return Err(RenderError::Bad(format!(
                "template {:?}: at most one {{inputs.…}}/{{outputs.…}} per argument",
                self.src
            )));
        }
        let Seg::List(kind, name) = &self.segs[pos] else {
            unreachable!("position() found a list segment")
        };
        let items = lists(*kind, name).ok_or_else(|| {
            let k = if *kind == ListKind::Inputs {
                "inputs"
            } else {
                "outputs"
            };
            RenderError::Bad(format!("template {:?}: no {k} named {name:?}", self.src))
        })?;
        let mut pre = String::new();
        for s in &self.segs[..pos] {
            render_seg(s, vars, &mut pre)?;
        }
        let mut post = String::new();
        for s in &self.segs[pos + 1..] {
            render_seg(s, vars, &mut post)?;
        }
        Ok(items.iter().map(|it| format!("{pre}{it}{post}")).collect())
    }
}

/// Replaces `{name}` by the text of `macros[name]` (recursively): variables whose value
/// needs a task's variables (e.g. `frame: "{outdir}/{file:frame}"`) are kept as text and
/// inlined into the templates that use them.
pub fn inline(
    src: &str,
    macros: &std::collections::BTreeMap<String, String>,
) -> Result<String, String> {
    fn go(
        src: &str,
        macros: &std::collections::BTreeMap<String, String>,
        depth: usize,
    ) -> Result<String, String> {
        let mut out = String::with_capacity(src.len());
        let mut rest = src;
        while let Some(i) = rest.find(['{', '}']) {
            out.push_str(&rest[..i]);
            let r = &rest[i..];
            if r.starts_with("{{") || r.starts_with("}}") {
                out.push_str(&r[..2]);
                rest = &r[2..];
            } else if let Some(after) = r.strip_prefix('}') {
                out.push('}');
                rest = after;
            } else {
                let Some(j) = r.find('}') else {
                    out.push_str(r);
                    rest = "";
                    break;
                };
                let body = r[1..j].trim();
                match macros.get(body) {
                    Some(m) if depth >= 16 => {
                        return Err(format!("variable {body} refers to itself ({m:?})"))
                    }
                    Some(m) => out.push_str(&go(m, macros, depth + 1)?),
                    None => out.push_str(&r[..=j]),
                }
                rest = &r[j + 1..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }
    if macros.is_empty() {
        return Ok(src.to_string());
    }
    go(src, macros, 0)
}

fn parse_placeholder(src: &str, body: &str) -> Result<Seg, String> {
    let body = body.trim();
    if let Some(kind) = body.strip_prefix("file:") {
        let kind =
            FileKind::from_name(kind.trim()).map_err(|e| format!("template {src:?}: {e}"))?;
        return Ok(Seg::File(kind));
    }
    if let Some(n) = body.strip_prefix("inputs.") {
        return Ok(Seg::List(ListKind::Inputs, n.to_string()));
    }
    if let Some(n) = body.strip_prefix("outputs.") {
        return Ok(Seg::List(ListKind::Outputs, n.to_string()));
    }
    let (name, spec) = match body.split_once(':') {
        Some((n, s)) => (n.trim(), Some(s.trim())),
        None => (body, None),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("template {src:?}: bad variable name {name:?}"));
    }
    let int_width = match spec {
        None => None,
        Some(s) => {
            let digits = s
                .strip_suffix('d')
                .ok_or_else(|| format!("template {src:?}: format {s:?} (only d, Nd, 0Nd)"))?;
            let zero = digits.starts_with('0');
            let width = if digits.is_empty() {
                0
            } else {
                digits
                    .parse::<usize>()
                    .map_err(|_| format!("template {src:?}: format {s:?} (only d, Nd, 0Nd)"))?
            };
            Some((width, zero))
        }
    };
    Ok(Seg::Var {
        name: name.to_string(),
        int_width,
    })
}

fn lookup<'a>(vars: &'a dyn Vars, name: &str) -> Result<&'a str, RenderError> {
    vars.get(name)
        .ok_or_else(|| RenderError::Unbound(name.to_string()))
}

fn int_var<T: std::str::FromStr>(vars: &dyn Vars, name: &str) -> Result<Option<T>, RenderError> {
    match vars.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|_| RenderError::Bad(format!("variable {name} = {v:?} is not an integer"))),
    }
}

fn render_seg(seg: &Seg, vars: &dyn Vars, out: &mut String) -> Result<(), RenderError> {
    use std::fmt::Write;
    match seg {
        Seg::Lit(s) => out.push_str(s),
        Seg::Var { name, int_width } => {
            let v = lookup(vars, name)?;
            match int_width {
                None => out.push_str(v),
                Some((w, zero)) => {
                    let n: i64 = v.trim().parse().map_err(|_| {
                        RenderError::Bad(format!("variable {name} = {v:?} is not an integer"))
                    })?;
                    let w = *w;
                    let _ = if *zero {
                        write!(out, "{n:0w$}")
                    } else {
                        write!(out, "{n:w$}")
                    };
                }
            }
        }
        Seg::File(kind) => {
            let id = FileId {
                night: int_var(vars, "night")?,
                expid: int_var(vars, "expid")?,
                camera: vars.get("camera").map(str::to_string),
                spectrograph: int_var(vars, "spectrograph")?,
                tile: int_var(vars, "tile")?,
            };
            match relpath(*kind, &id) {
                Ok(p) => out.push_str(&p.to_string_lossy()),
                Err(spx::io::findfile::FindFileError::Missing { field, .. }) => {
                    return Err(RenderError::Unbound(field.to_string()))
                }
                Err(e) => return Err(RenderError::Bad(e.to_string())),
            }
        }
        Seg::List(..) => unreachable!("lists are rendered by render_list"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn vars(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_variables_formats_and_files() {
        let v = vars(&[
            ("outdir", "/o"),
            ("night", "20201214"),
            ("expid", "12"),
            ("camera", "b1"),
        ]);
        let t = Template::parse("{outdir}/{file:frame} e{expid:08d} {{x}} {expid:4d}").unwrap();
        assert_eq!(
            t.render(&v).unwrap(),
            "/o/exposures/20201214/00000012/frame-b1-00000012.fits e00000012 {x}   12"
        );
        let t = Template::parse("{tile}/{file:stdstars}").unwrap();
        assert_eq!(t.render(&v), Err(RenderError::Unbound("tile".into())));
        let t = Template::parse("{file:coadd}").unwrap();
        assert_eq!(t.render(&v), Err(RenderError::Unbound("tile".into())));
    }

    #[test]
    fn bad_templates_are_one_line_errors() {
        assert!(Template::parse("{a").unwrap_err().contains("unclosed"));
        assert!(Template::parse("a}").unwrap_err().contains("unmatched"));
        assert!(Template::parse("{file:nope}")
            .unwrap_err()
            .contains("unknown file kind"));
        assert!(Template::parse("{x:8s}").unwrap_err().contains("format"));
        let v = vars(&[("expid", "x")]);
        assert!(matches!(
            Template::parse("{expid:08d}").unwrap().render(&v),
            Err(RenderError::Bad(_))
        ));
    }

    #[test]
    fn macros_inline_recursively() {
        let m: BTreeMap<String, String> = [
            ("frame", "{outdir}/{file:frame}"),
            ("outdir", "{base}/redux"),
            ("loop", "{loop}"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            inline("x {frame} {{frame}} {expid:08d}", &m).unwrap(),
            "x {base}/redux/{file:frame} {{frame}} {expid:08d}"
        );
        assert!(inline("{loop}", &m)
            .unwrap_err()
            .contains("refers to itself"));
    }

    #[test]
    fn list_arguments_repeat() {
        let v = vars(&[("a", "A")]);
        let xy = ["x".to_string(), "y".to_string()];
        let lists = |k: ListKind, n: &str| (k == ListKind::Inputs && n == "f").then_some(&xy[..]);
        let t = Template::parse("--in={inputs.f}:{a}").unwrap();
        assert_eq!(
            t.render_list(&v, &lists).unwrap(),
            vec!["--in=x:A", "--in=y:A"]
        );
        assert!(Template::parse("{outputs.f}")
            .unwrap()
            .render_list(&v, &lists)
            .is_err());
        assert!(Template::parse("{inputs.f}").unwrap().render(&v).is_err());
    }
}
