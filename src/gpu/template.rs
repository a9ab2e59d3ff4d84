//! A small line-based template expander for the WGSL of `shaders/`.
//!
//! Why: several shaders are stamped copies of one body (entry points that differ in two names,
//! register tiles unrolled by hand). The template in `shaders/templates/` is the one home of such
//! code; the expanded `.wgsl` is checked in beside it (so `include_str!` and naga see plain WGSL) and
//! a test regenerates every template and compares it byte for byte, so the two cannot drift.
//! `TAILOR_REGEN=1 cargo test --lib gpu::template` rewrites the checked-in files instead, and with
//! them `src/gpu/entries.rs`, the typed table of the shaders' entry points.
//!
//! Syntax (directives are whole lines whose first non-blank text starts with `#`):
//! - `#for i in 0..N` … `#end`: repeat the body with `{{i}}` = 0, 1, …, N-1.
//! - `#for a,b in x:y z:w` … `#end`: repeat the body once per item, the `:`-separated fields of each
//!   item bound to the names in order (`{{a}}` = x, `{{b}}` = y, then z, w). Where a field holds
//!   spaces (a WGSL expression), the items are separated by ` | ` instead: `#for a,b in x:y + 1 | z:`
//!   (an empty field binds the empty string). `{{name}}` in the items is replaced first, so
//!   `#for i in 0..{{n}}` repeats as often as an enclosing `#for` says.
//! - `#if a == x` (or `a != x`) / `#else` / `#end`: keep one branch, by a name bound by an
//!   enclosing `#for` or by the variant being expanded ([`expand_with`]).
//! - `##` at the start of a line: a template comment, dropped.
//! - A directive line ending in `\` continues on the next line (long `#for` lists, one item a line).
//! - `#include NAME`: the line is replaced by the expansion of `shaders/templates/NAME`, one of
//!   [`INCLUDES`], with the names bound at that line visible inside (its directives work, and it
//!   may include another file, but not itself). The shared helpers of the kernels live there once:
//!   grid indices (`common.wgsl.inc`), workgroup sums (`reduce.wgsl.inc`) and row sums
//!   (`rows.wgsl.inc`). The table embeds them, so that a template expands the same way in the
//!   regeneration test and at run time (batch norm without subgroups).
//!
//! Lines without directives are copied with `{{name}}` replaced by the bound value.

use std::collections::HashMap;

/// Why a template does not expand: the line (1-based) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "template line {}: {}", self.line, self.message)
    }
}

/// Expands `source` (see the module docs) into WGSL.
pub fn expand(source: &str) -> Result<String, TemplateError> {
    expand_with(source, &[])
}

/// Expands `source` with `vars` bound at the top (the variant of a template, e.g. without subgroups).
pub fn expand_with(source: &str, vars: &[(&str, &str)]) -> Result<String, TemplateError> {
    let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    expand_in(source, &vars, &Includes { files: INCLUDES, chain: &[] })
}

/// The files `#include` may name, and the chain of those being expanded around the current one
/// (a file that includes itself, directly or not, would never end).
struct Includes<'a> {
    files: &'a [(&'a str, &'a str)],
    chain: &'a [&'a str],
}

fn expand_in(source: &str, vars: &HashMap<String, String>, includes: &Includes) -> Result<String, TemplateError> {
    // A directive line ending in `\` goes on in the next line: the two are joined in the first and
    // the next is dropped like a `##` comment, so that errors still name the lines of the source.
    let mut joined: Vec<String> = source.split_inclusive('\n').map(String::from).collect();
    let mut i = 0;
    while i < joined.len() {
        let start = i;
        while directive(&joined[start]).is_some() && joined[start].trim_end().ends_with('\\') && i + 1 < joined.len() {
            i += 1;
            let next = std::mem::replace(&mut joined[i], "##\n".into());
            let head = joined[start].trim_end().trim_end_matches('\\').to_string();
            joined[start] = head + next.trim_start();
        }
        i += 1;
    }
    let lines: Vec<&str> = joined.iter().map(String::as_str).collect();
    let mut out = String::new();
    let end = block(&lines, 0, vars, &mut out, true, includes)?;
    if end != lines.len() {
        return Err(TemplateError {
            line: end + 1,
            message: "`#end` or `#else` without an opening `#for`/`#if`".into(),
        });
    }
    Ok(out)
}

fn directive(line: &str) -> Option<&str> {
    let t = line.trim();
    t.strip_prefix('#').filter(|_| !t.starts_with("##"))
}

/// Expands lines from `start` until an unmatched `#end`/`#else` (or the end), returning its index.
/// With `emit` false the lines are only walked (an untaken `#if` branch).
fn block(
    lines: &[&str],
    start: usize,
    vars: &HashMap<String, String>,
    out: &mut String,
    emit: bool,
    includes: &Includes,
) -> Result<usize, TemplateError> {
    let mut i = start;
    while i < lines.len() {
        let line = lines[i];
        if line.trim_start().starts_with("##") {
            i += 1;
            continue;
        }
        let Some(d) = directive(line) else {
            if emit {
                out.push_str(&substitute(line, vars, i)?);
            }
            i += 1;
            continue;
        };
        let err = |message: String| TemplateError { line: i + 1, message };
        if d == "end" || d == "else" {
            return Ok(i);
        } else if let Some(rest) = d.strip_prefix("for ") {
            let (names, items) = rest.split_once(" in ").ok_or_else(|| err("`#for` needs `NAMES in ITEMS`".into()))?;
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            // In a branch that is only walked, the names the items refer to may not be bound.
            let items = if emit {
                for_items(substitute(items, vars, i)?.trim(), names.len()).map_err(err)?
            } else {
                Vec::new()
            };
            let mut close = i + 1;
            if items.is_empty() {
                close = block(lines, i + 1, vars, &mut String::new(), false, includes)?;
            }
            for item in &items {
                let mut inner = vars.clone();
                for (n, v) in names.iter().zip(item) {
                    inner.insert(n.to_string(), v.clone());
                }
                close = block(lines, i + 1, &inner, out, emit, includes)?;
            }
            if close >= lines.len() || directive(lines[close]) != Some("end") {
                return Err(err("`#for` without its `#end`".into()));
            }
            i = close + 1;
        } else if let Some(cond) = d.strip_prefix("if ") {
            let (name, value, equal) = match cond.split_once("!=") {
                Some((name, value)) => (name, value, false),
                None => {
                    let (name, value) = cond
                        .split_once("==")
                        .ok_or_else(|| err("`#if` needs `NAME == VALUE` or `NAME != VALUE`".into()))?;
                    (name, value, true)
                }
            };
            // In a branch that is only walked, a `#for`'s names are not bound: nothing is chosen there.
            let taken = match vars.get(name.trim()) {
                Some(bound) => (bound == value.trim()) == equal,
                None if !emit => false,
                None => return Err(err(format!("`{}` is not bound here", name.trim()))),
            };
            let mid = block(lines, i + 1, vars, out, emit && taken, includes)?;
            let close = if mid < lines.len() && directive(lines[mid]) == Some("else") {
                block(lines, mid + 1, vars, out, emit && !taken, includes)?
            } else {
                mid
            };
            if close >= lines.len() || directive(lines[close]) != Some("end") {
                return Err(err("`#if` without its `#end`".into()));
            }
            i = close + 1;
        } else if let Some(name) = d.strip_prefix("include ") {
            let name = name.trim();
            let Some(&(file, text)) = includes.files.iter().find(|(file, _)| *file == name) else {
                return Err(err(format!(
                    "`#include {name}`: shaders/templates/{name} is not in gpu::template::INCLUDES (add it there)"
                )));
            };
            if includes.chain.contains(&file) {
                return Err(err(format!("`#include {name}` would expand shaders/templates/{name} inside itself")));
            }
            // In a branch only walked, the file is not expanded (the names it uses may not be bound).
            if emit {
                let chain: Vec<&str> = includes.chain.iter().copied().chain([file]).collect();
                let inner = expand_in(text, vars, &Includes { files: includes.files, chain: &chain })
                    .map_err(|e| err(format!("in shaders/templates/{name} line {}: {}", e.line, e.message)))?;
                out.push_str(&inner);
                if !inner.is_empty() && !inner.ends_with('\n') {
                    out.push('\n');
                }
            }
            i += 1;
        } else {
            // Not a directive of ours (WGSL has no `#` lines, so this is a typo in a template).
            return Err(err(format!("unknown directive `#{d}`")));
        }
    }
    Ok(i)
}

fn for_items(items: &str, arity: usize) -> Result<Vec<Vec<String>>, String> {
    if let Some((a, b)) = items.split_once("..") {
        let parse = |s: &str| s.trim().parse::<u32>().map_err(|_| format!("`{s}` is not a loop bound"));
        let (a, b) = (parse(a)?, parse(b)?);
        if arity != 1 {
            return Err("a range binds one name".into());
        }
        return Ok((a..b).map(|k| vec![k.to_string()]).collect());
    }
    let list: Vec<&str> = if items.contains('|') {
        items.split('|').map(str::trim).collect()
    } else {
        items.split_whitespace().collect()
    };
    list.into_iter()
        .map(|item| {
            let fields: Vec<String> = item.split(':').map(String::from).collect();
            if fields.len() == arity {
                Ok(fields)
            } else {
                Err(format!("`{item}` has {} fields for {arity} names", fields.len()))
            }
        })
        .collect()
}

fn substitute(line: &str, vars: &HashMap<String, String>, i: usize) -> Result<String, TemplateError> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after.find("}}").ok_or(TemplateError { line: i + 1, message: "`{{` without `}}`".into() })?;
        let name = after[..close].trim();
        let value = vars
            .get(name)
            .ok_or_else(|| TemplateError { line: i + 1, message: format!("`{name}` is not bound here") })?;
        out.push_str(value);
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A template of `shaders/templates/`, the checked-in file of `shaders/` it expands to, and the
/// names bound for that expansion.
pub struct Template {
    pub template: &'static str,
    pub generated: &'static str,
    pub vars: &'static [(&'static str, &'static str)],
}

/// Every checked-in generated shader. (Variants that no device needs in the same run, such as
/// batch norm without subgroups, are expanded at run time from the embedded template instead.)
pub const TEMPLATES: &[Template] = &[
    Template { template: "gemm.wgsl.tmpl", generated: "gemm.wgsl", vars: &[] },
    Template { template: "batchnorm.wgsl.tmpl", generated: "batchnorm.wgsl", vars: &[("subgroups", "yes")] },
    Template { template: "conv.wgsl.tmpl", generated: "conv.wgsl", vars: &[] },
    Template { template: "pool.wgsl.tmpl", generated: "pool.wgsl", vars: &[] },
    Template { template: "knn.wgsl.tmpl", generated: "knn.wgsl", vars: &[] },
    Template { template: "embed.wgsl.tmpl", generated: "embed.wgsl", vars: &[] },
    Template { template: "loss.wgsl.tmpl", generated: "loss.wgsl", vars: &[] },
    Template { template: "elementwise.wgsl.tmpl", generated: "elementwise.wgsl", vars: &[] },
    Template { template: "fill.wgsl.tmpl", generated: "fill.wgsl", vars: &[] },
];

/// The files of `shaders/templates/` that `#include` may name, embedded (see the module docs).
pub const INCLUDES: &[(&str, &str)] = &[
    ("common.wgsl.inc", include_str!("../../shaders/templates/common.wgsl.inc")),
    ("reduce.wgsl.inc", include_str!("../../shaders/templates/reduce.wgsl.inc")),
    ("rows.wgsl.inc", include_str!("../../shaders/templates/rows.wgsl.inc")),
];

/// The batch norm template, for its variant without subgroups.
pub const BATCHNORM_TEMPLATE: &str = include_str!("../../shaders/templates/batchnorm.wgsl.tmpl");

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn expands_ranges_lists_and_variants() {
        let t = "#for i in 0..3\na{{i}}\n#end\n#for x,y in p:q r:s\n#if x == p\n{{y}}!\n#else\n{{y}}?\n#end\n#end\n## gone\nz\n";
        assert_eq!(expand(t).unwrap(), "a0\na1\na2\nq!\ns?\nz\n");
    }

    #[test]
    fn expands_bar_lists_substituted_bounds_and_inequality() {
        // ` | ` separates items whose fields hold spaces; an empty field binds "".
        let t = "#for a,b in x: + 1 | y:\n{{a}}{{b}};\n#end\n";
        assert_eq!(expand(t).unwrap(), "x + 1;\ny;\n");
        // A range bound taken from an enclosing `#for`.
        let t = "#for n in 1 3\n#for i in 0..{{n}}\n{{n}}{{i}}\n#end\n#end\n";
        assert_eq!(expand(t).unwrap(), "10\n30\n31\n32\n");
        let t = "#for s in | _v4\n#if s != _v4\nplain\n#else\nv4\n#end\nf{{s}}\n#end\n";
        assert_eq!(expand(t).unwrap(), "plain\nf\nv4\nf_v4\n");
        // A directive continued over lines.
        let t = "x\n#for a,b in p:1 | \\\n    q:2\n{{a}}{{b}}\n#end\n#for i in 0..{{j}}\n#end\n";
        assert_eq!(expand_with(t, &[("j", "0")]).unwrap(), "x\np1\nq2\n");
        assert_eq!(expand(t).unwrap_err().line, 6);
        // In a branch only walked, a bound naming an unbound name is no error.
        let t = "#if s == no\n#for i in 0..{{n}}\nx\n#end\n#end\ny\n";
        assert_eq!(expand_with(t, &[("s", "yes")]).unwrap(), "y\n");
        assert_eq!(expand_with(t, &[("s", "no")]).unwrap_err().line, 2);
    }

    #[test]
    fn reports_the_line_of_a_bad_template() {
        assert_eq!(expand("x\n#for i in 0..2\n{{j}}\n#end\n").unwrap_err().line, 3);
        assert_eq!(expand("#for i in 0..2\nx\n").unwrap_err().line, 1);
        assert_eq!(expand("#end\n").unwrap_err().line, 1);
        assert_eq!(expand("#if v == x\ny\n#end\n").unwrap_err().line, 1);
        assert_eq!(expand_with("#if v == x\ny\n#else\nz\n#end\n", &[("v", "w")]).unwrap(), "z\n");
        assert!(expand("#loop\n").is_err());
        // An `#if` on a `#for`'s name inside a branch not taken (only walked) is no error.
        let nested = "#if s == no\n#for i in 0..2\n#if i == 0\nx\n#end\n#end\n#end\ny\n";
        assert_eq!(expand_with(nested, &[("s", "yes")]).unwrap(), "y\n");
        assert_eq!(expand_with(nested, &[("s", "no")]).unwrap(), "x\ny\n");
    }

    fn expand_among(source: &str, vars: &[(&str, &str)], files: &[(&str, &str)]) -> Result<String, TemplateError> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        expand_in(source, &vars, &Includes { files, chain: &[] })
    }

    #[test]
    fn includes_expand_in_place_with_the_names_bound_at_the_line() {
        let files = [
            ("a.inc", "## gone\n#for i in 0..{{n}}\na{{i}}{{s}}\n#end\n#include b.inc\n"),
            ("b.inc", "#if s == !\nb\n#end\n"),
            ("loop.inc", "x\n#include loop.inc\n"),
            ("bad.inc", "x\n{{nope}}\n"),
            ("unended.inc", "u"),
        ];
        let t = "top\n#for s in ! ?\n#include a.inc\n#end\nend\n";
        assert_eq!(expand_among(t, &[("n", "2")], &files).unwrap(), "top\na0!\na1!\nb\na0?\na1?\nend\n");
        assert_eq!(expand_among("#include unended.inc\nv\n", &[], &files).unwrap(), "u\nv\n");
        // An unknown file, one that includes itself, and an error inside an included file: each
        // names the line of the `#include` and the file.
        let unknown = expand_among("x\n#include nope.inc\n", &[], &files).unwrap_err();
        assert_eq!(unknown.line, 2);
        assert!(unknown.message.contains("shaders/templates/nope.inc"), "{unknown}");
        let looped = expand_among("#include loop.inc\n", &[], &files).unwrap_err();
        assert_eq!(looped.line, 1);
        assert!(looped.message.contains("loop.inc line 2"), "{looped}");
        let inner = expand_among("x\ny\n#include bad.inc\n", &[], &files).unwrap_err();
        assert_eq!(inner.line, 3);
        assert!(inner.message.contains("shaders/templates/bad.inc line 2"), "{inner}");
        // An unknown file is an error in a branch not taken too; the real table resolves.
        assert_eq!(expand_among("#if v == w\n#include nope.inc\n#end\n", &[("v", "x")], &files).unwrap_err().line, 2);
        let common = expand("#include common.wgsl.inc\n").unwrap();
        assert!(common.contains("fn group_index(") && common.contains("fn global_index("), "{common}");
        let rows = expand("#include rows.wgsl.inc\n").unwrap();
        assert!(rows.contains("fn row_sum(") && rows.contains("fn group_sum("), "{rows}");
    }

    #[test]
    fn batchnorm_variant_without_subgroups_drops_the_subgroup_call() {
        let yes = expand_with(BATCHNORM_TEMPLATE, &[("subgroups", "yes")]).unwrap();
        let no = expand_with(BATCHNORM_TEMPLATE, &[("subgroups", "no")]).unwrap();
        assert_eq!(yes.matches("subgroupAdd(").count(), 1);
        assert_eq!(no.matches("subgroupAdd(").count(), 0);
        assert_eq!(yes.replace("return subgroupAdd(v);", "return v;"), no);
    }

    /// `forward_3x3_v8` → `Forward3x3V8`.
    fn camel(snake: &str) -> String {
        snake
            .split('_')
            .map(|w| {
                let mut c = w.chars();
                c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
            })
            .collect()
    }

    /// The Rust source of `src/gpu/entries.rs`: one enum per kernel shader of [`shaders::ALL`]
    /// with a variant per `@compute` entry point (as naga lists them, in source order), and
    /// [`EntryPoint`](crate::gpu::EntryPoint), the enum of those enums.
    fn entries_source() -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "//! The entry points of the kernel shaders, generated from `shaders/` by\n\
             //! `TAILOR_REGEN=1 cargo test --lib gpu::template` (do not edit by hand): one enum per shader of\n\
             //! [`shaders::ALL`], a variant per `@compute` entry point in source order. A test\n\
             //! (`gpu::template::tests::generated_entry_table_matches_the_shaders`) parses every shader with\n\
             //! naga and fails when this file is out of date, so a launch names an entry point that exists,\n\
             //! of the shader it names, or does not compile.\n\
             \n\
             use super::shaders::{self, Shader};\n",
        );
        /// One shader: its constant in `gpu::shaders`, its enum's name and (variant, entry name)s.
        struct Table {
            constant: String,
            name: String,
            entries: Vec<(String, String)>,
        }
        let mut tables: Vec<Table> = Vec::new();
        for shader in crate::gpu::shaders::ALL {
            let module = naga::front::wgsl::parse_str(shader.source).unwrap_or_else(|e| panic!("{}: {e}", shader.name));
            let stem = shader.name.strip_suffix(".wgsl").expect("shaders are .wgsl files");
            let entries: Vec<(String, String)> = module
                .entry_points
                .iter()
                .filter(|ep| ep.stage == naga::ShaderStage::Compute)
                .map(|ep| (camel(&ep.name), ep.name.clone()))
                .collect();
            tables.push(Table { constant: stem.to_ascii_uppercase(), name: format!("{}Entry", camel(stem)), entries });
        }
        for Table { constant, name, entries } in &tables {
            let file = format!("{}.wgsl", constant.to_ascii_lowercase());
            let _ = write!(
                out,
                "\n/// The entry points of `shaders/{file}`.\n\
                 #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]\n\
                 pub enum {name} {{\n"
            );
            for (variant, entry) in entries {
                let _ = writeln!(out, "    /// `{entry}`\n    {variant},");
            }
            let _ = write!(
                out,
                "}}\n\n\
                 impl {name} {{\n    \
                 /// Every entry point of the shader, in source order.\n    \
                 pub const ALL: &'static [{name}] = &[\n"
            );
            for (variant, _) in entries {
                let _ = writeln!(out, "        {name}::{variant},");
            }
            let _ = write!(
                out,
                "    ];\n\n    \
                 /// The shader that holds these entry points.\n    \
                 pub const SHADER: Shader = shaders::{constant};\n\n    \
                 /// The entry point's name in WGSL.\n    \
                 pub const fn name(self) -> &'static str {{\n        \
                 match self {{\n"
            );
            for (variant, entry) in entries {
                let _ = writeln!(out, "            {name}::{variant} => \"{entry}\",");
            }
            let _ = write!(
                out,
                "        }}\n    }}\n}}\n\n\
                 impl From<{name}> for EntryPoint {{\n    \
                 fn from(e: {name}) -> Self {{\n        \
                 EntryPoint::{}(e)\n    }}\n}}\n",
                name.trim_end_matches("Entry")
            );
        }
        out.push_str(
            "\n/// An entry point of one of the kernel shaders.\n\
             #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]\n\
             pub enum EntryPoint {\n",
        );
        for Table { name, .. } in &tables {
            let _ = writeln!(out, "    {}({name}),", name.trim_end_matches("Entry"));
        }
        out.push_str(
            "}\n\n\
             impl EntryPoint {\n    \
             /// Every entry point of every kernel shader, shader by shader in the order of [`shaders::ALL`].\n    \
             pub const ALL: &'static [EntryPoint] = &[\n",
        );
        for Table { name, entries, .. } in &tables {
            for (variant, _) in entries {
                let _ = writeln!(out, "        EntryPoint::{}({name}::{variant}),", name.trim_end_matches("Entry"));
            }
        }
        out.push_str(
            "    ];\n\n    \
             /// The entry point's name in WGSL.\n    \
             pub const fn name(self) -> &'static str {\n        \
             match self {\n",
        );
        for Table { name, .. } in &tables {
            let _ = writeln!(out, "            EntryPoint::{}(e) => e.name(),", name.trim_end_matches("Entry"));
        }
        out.push_str(
            "        }\n    }\n\n    \
             /// The shader that holds the entry point.\n    \
             pub const fn shader(self) -> Shader {\n        \
             match self {\n",
        );
        for Table { name, .. } in &tables {
            let _ = writeln!(out, "            EntryPoint::{}(_) => {name}::SHADER,", name.trim_end_matches("Entry"));
        }
        out.push_str("        }\n    }\n}\n");
        out
    }

    /// `src/gpu/entries.rs` lists exactly the `@compute` entry points of the kernel shaders (the
    /// generated WGSL included, so regenerate the shaders first); with `TAILOR_REGEN=1` it is
    /// rewritten instead.
    #[test]
    fn generated_entry_table_matches_the_shaders() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gpu/entries.rs");
        let source = entries_source();
        if std::env::var_os("TAILOR_REGEN").is_some() {
            std::fs::write(&path, &source).unwrap();
        } else {
            let checked_in = std::fs::read_to_string(&path).unwrap();
            assert!(source == checked_in, "src/gpu/entries.rs is out of date with the entry points of shaders/: run `TAILOR_REGEN=1 cargo test --lib gpu::template` and commit it");
        }
        // And the compiled table agrees with the shaders it was generated from.
        for shader in crate::gpu::shaders::ALL {
            let module = naga::front::wgsl::parse_str(shader.source).unwrap();
            let want: Vec<&str> = module
                .entry_points
                .iter()
                .filter(|ep| ep.stage == naga::ShaderStage::Compute)
                .map(|ep| ep.name.as_str())
                .collect();
            let have: Vec<&str> =
                crate::gpu::EntryPoint::ALL.iter().filter(|e| e.shader() == *shader).map(|e| e.name()).collect();
            assert_eq!(have, want, "{}", shader.name);
        }
    }

    /// Every checked-in generated shader is what its template expands to today; with
    /// `TAILOR_REGEN=1` the generated files are rewritten instead.
    #[test]
    fn generated_shaders_match_their_templates() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let regen = std::env::var_os("TAILOR_REGEN").is_some();
        for Template { template, generated, vars } in TEMPLATES {
            let source = std::fs::read_to_string(dir.join("templates").join(template)).unwrap();
            let wgsl = expand_with(&source, vars).unwrap_or_else(|e| panic!("{template}: {e}"));
            let path = dir.join(generated);
            if regen {
                std::fs::write(&path, &wgsl).unwrap();
            } else {
                let checked_in = std::fs::read_to_string(&path).unwrap();
                assert!(wgsl == checked_in, "shaders/{generated} differs from the expansion of shaders/templates/{template}: run `TAILOR_REGEN=1 cargo test --lib gpu::template` and commit both");
            }
        }
    }
}
