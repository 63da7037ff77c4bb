//! The house rules of the source: every import points down the layer order drawn in
//! `src/lib.rs`, and no files import each other in a circle.
//!
//! Every `.rs` file under `src/` is parsed (with `syn`, test modules included), and each path
//! that starts with `crate::`, `super::` or `self::` (in `use` items, in code, and inside macro
//! calls) is resolved to the file that defines it, through the `pub use` re-exports of the
//! modules on its way. Then:
//! - between the library's top-level modules, a file may only name modules in a lower row of
//!   the diagram (modules of one row do not import each other);
//! - inside a module, its files (its direct submodules, each with everything below it) must
//!   not import each other in a circle. A module may use its submodules, and they may use what
//!   the module itself defines; the rule is about siblings.
//!
//! The binary (`main.rs`, `cli.rs`, `commands/`) is checked for circles the same way.
//!
//! What it does not see: a path that starts with a name a `use` brought in (`video::decode::X`
//! after `use crate::video;` counts as an import of `video`, not of `video::decode`), the
//! items a glob (`use super::*`) or a module's private `use` passes on, trait impls (which
//! need no import), and macros called by bare name.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// A module path inside one crate: `["video", "flow"]`; the crate root is `[]`.
type ModPath = Vec<String>;

/// One file of a crate.
struct File {
    path: PathBuf,
    module: ModPath,
    syntax: syn::File,
}

/// An import of the file `from` of `to` (both module paths of files), at `line`.
#[derive(Debug, Clone)]
struct Import {
    file: PathBuf,
    from: ModPath,
    to: ModPath,
    line: usize,
    text: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Whether a file (relative to `src/`) belongs to the binary rather than the library.
fn in_binary(rel: &Path) -> bool {
    let first = rel.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or("");
    matches!(first, "main.rs" | "cli.rs" | "commands")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The files of the library (`binary` false) or of the binary.
fn crate_files(binary: bool) -> Vec<File> {
    let mut paths = Vec::new();
    rust_files(&src(), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(src()).unwrap().to_path_buf();
            if in_binary(&rel) != binary {
                return None;
            }
            let mut module: ModPath = rel.with_extension("").iter().map(|c| c.to_str().unwrap().to_string()).collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let syntax = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            Some(File { path, module, syntax })
        })
        .collect()
}

/// Collects the absolute paths a file names, with their lines.
struct Names {
    /// The module the code being visited is in (the file's, plus inline modules).
    here: ModPath,
    found: Vec<(ModPath, usize)>,
}

impl Names {
    /// `segments` (starting with `crate`, `super` or `self`) as an absolute path, if they do.
    fn absolute(&self, segments: &[String]) -> Option<ModPath> {
        let mut at = match segments.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super" | "self") => self.here.clone(),
            _ => return None,
        };
        let mut rest = segments;
        if rest[0] != "super" {
            rest = &rest[1..];
        }
        while rest.first().is_some_and(|s| s == "super") {
            at.pop()?;
            rest = &rest[1..];
        }
        at.extend(rest.iter().filter(|s| *s != "self").cloned());
        Some(at)
    }

    fn add(&mut self, segments: &[String], line: usize) {
        if segments.len() < 2 {
            return;
        }
        if let Some(p) = self.absolute(segments) {
            self.found.push((p, line));
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree, line: usize) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree, line);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.add(prefix, line);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.add(prefix, line);
                prefix.pop();
            }
            syn::UseTree::Glob(_) => {
                prefix.push("*".into());
                self.add(prefix, line);
                prefix.pop();
            }
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| self.use_tree(prefix, t, line)),
        }
    }

    /// `a::b::c` sequences of identifiers in macro input.
    fn tokens(&mut self, tokens: TokenStream) {
        let trees: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < trees.len() {
            match &trees[i] {
                TokenTree::Group(g) => self.tokens(g.stream()),
                TokenTree::Ident(id) if matches!(id.to_string().as_str(), "crate" | "super" | "self") => {
                    let line = id.span().start().line;
                    let mut segments = vec![id.to_string()];
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(next))) =
                        (trees.get(i + 1), trees.get(i + 2), trees.get(i + 3))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        i += 3;
                    }
                    self.add(&segments, line);
                }
                _ => {}
            }
            i += 1;
        }
    }
}

impl<'ast> Visit<'ast> for Names {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        self.here.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.here.pop();
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let line = u.use_token.span.start().line;
        self.use_tree(&mut Vec::new(), &u.tree, line);
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segments: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        let line = p.segments.first().map_or(0, |s| s.ident.span().start().line);
        self.add(&segments, line);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.visit_path(&m.path);
        self.tokens(m.tokens.clone());
    }
}

/// Names a module re-exports from its submodules: `pub use child::{A, b::C}` maps `A` and `C`
/// to `child` (its module path).
fn re_exports(file: &File) -> HashMap<String, ModPath> {
    fn walk(tree: &syn::UseTree, first: Option<&str>, module: &ModPath, out: &mut HashMap<String, ModPath>) {
        let child = |first: Option<&str>, out: &mut HashMap<String, ModPath>, name: String| {
            if let Some(c) = first {
                let mut to = module.clone();
                to.push(c.to_string());
                out.insert(name, to);
            }
        };
        match tree {
            syn::UseTree::Path(p) if first.is_none() && p.ident == "self" => walk(&p.tree, None, module, out),
            syn::UseTree::Path(p) => {
                let name = p.ident.to_string();
                walk(&p.tree, Some(first.unwrap_or(&name)), module, out)
            }
            syn::UseTree::Name(n) => child(first, out, n.ident.to_string()),
            syn::UseTree::Rename(r) => child(first, out, r.rename.to_string()),
            syn::UseTree::Glob(_) => {}
            syn::UseTree::Group(g) => g.items.iter().for_each(|t| walk(t, first, module, out)),
        }
    }
    let mut out = HashMap::new();
    for item in &file.syntax.items {
        if let syn::Item::Use(u) = item {
            if !matches!(u.vis, syn::Visibility::Inherited) {
                walk(&u.tree, None, &file.module, &mut out);
            }
        }
    }
    out
}

/// Every import between files of a crate.
fn imports(files: &[File]) -> Vec<Import> {
    let modules: BTreeSet<ModPath> = files.iter().map(|f| f.module.clone()).collect();
    let exports: HashMap<ModPath, HashMap<String, ModPath>> =
        files.iter().map(|f| (f.module.clone(), re_exports(f))).collect();
    // The file defining `path`: the longest prefix that is a file, then on through the
    // re-exports of the name that follows it.
    let resolve = |path: &ModPath| -> ModPath {
        let mut file: ModPath =
            (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p)).unwrap();
        let Some(name) = path.get(file.len()) else { return file };
        while let Some(next) = exports.get(&file).and_then(|e| e.get(name)) {
            if !modules.contains(next) || next == &file {
                break;
            }
            file = next.clone();
        }
        file
    };
    let mut out = Vec::new();
    for f in files {
        let mut names = Names { here: f.module.clone(), found: Vec::new() };
        names.visit_file(&f.syntax);
        let text = std::fs::read_to_string(&f.path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (path, line) in names.found {
            let to = resolve(&path);
            if to != f.module {
                let text = lines.get(line.wrapping_sub(1)).map_or("", |l| l.trim()).to_string();
                out.push(Import { file: f.path.clone(), from: f.module.clone(), to, line, text });
            }
        }
    }
    out
}

/// The rows of the layer diagram in `src/lib.rs`'s doc, top row first.
fn layer_rows() -> Vec<Vec<String>> {
    let lib = std::fs::read_to_string(src().join("lib.rs")).unwrap();
    let doc: Vec<&str> =
        lib.lines().filter_map(|l| l.strip_prefix("//!")).map(|l| l.strip_prefix(' ').unwrap_or(l)).collect();
    let start = doc.iter().position(|l| l.trim() == "```text").expect("src/lib.rs draws the layers in a ```text block");
    let end = start + 1 + doc[start + 1..].iter().position(|l| l.trim() == "```").expect("the ```text block ends");
    doc[start + 1..end]
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let names = l.split("  ").next().unwrap();
            names.split('·').map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect()
        })
        .collect()
}

/// Circles among the direct submodules of each module: `(module, the files of one circle)`.
fn circles(imports: &[Import]) -> Vec<Vec<Import>> {
    // Sibling edges: the importing and imported files, seen from their closest common module.
    let mut graphs: BTreeMap<ModPath, BTreeMap<String, BTreeMap<String, Import>>> = BTreeMap::new();
    for i in imports {
        let common = i.from.iter().zip(&i.to).take_while(|(a, b)| a == b).count();
        let (Some(a), Some(b)) = (i.from.get(common), i.to.get(common)) else {
            continue; // a module and its own submodules
        };
        let parent = i.from[..common].to_vec();
        graphs.entry(parent).or_default().entry(a.clone()).or_default().entry(b.clone()).or_insert_with(|| i.clone());
    }
    let mut found = Vec::new();
    for edges in graphs.values() {
        // Depth-first search for a back edge; each circle reported once, from its first node.
        fn dfs<'a>(
            node: &'a str,
            edges: &'a BTreeMap<String, BTreeMap<String, Import>>,
            stack: &mut Vec<&'a str>,
            done: &mut BTreeSet<&'a str>,
            found: &mut Vec<Vec<Import>>,
        ) {
            stack.push(node);
            for (next, import) in edges.get(node).into_iter().flatten() {
                if let Some(at) = stack.iter().position(|n| n == next) {
                    let mut circle: Vec<Import> = stack[at..].windows(2).map(|w| edges[w[0]][w[1]].clone()).collect();
                    circle.push(import.clone());
                    found.push(circle);
                } else if !done.contains(next.as_str()) {
                    dfs(next, edges, stack, done, found);
                }
            }
            stack.pop();
            done.insert(node);
        }
        let mut done = BTreeSet::new();
        for node in edges.keys() {
            if !done.contains(node.as_str()) {
                dfs(node, edges, &mut Vec::new(), &mut done, &mut found);
            }
        }
    }
    found
}

fn describe(i: &Import) -> String {
    let file = i.file.strip_prefix(src()).unwrap().display();
    format!("  src/{file}:{} `{}`  ({} -> {})", i.line, i.text, i.from.join("::"), i.to.join("::"))
}

#[test]
fn every_import_points_down_the_layers_of_lib_rs() {
    let rows = layer_rows();
    let row_of: HashMap<&str, usize> =
        rows.iter().enumerate().flat_map(|(r, names)| names.iter().map(move |n| (n.as_str(), r))).collect();
    let files = crate_files(false);
    let top: BTreeSet<&str> = files.iter().filter_map(|f| f.module.first()).map(String::as_str).collect();
    let missing: Vec<&&str> = top.iter().filter(|m| !row_of.contains_key(**m)).collect();
    assert!(missing.is_empty(), "modules missing from the layer diagram in src/lib.rs: {missing:?}");
    let drawn: Vec<&&str> = row_of.keys().filter(|m| !top.contains(**m)).collect();
    assert!(drawn.is_empty(), "the layer diagram in src/lib.rs names modules that do not exist: {drawn:?}");
    let upward: Vec<String> = imports(&files)
        .iter()
        .filter(|i| {
            let (Some(from), Some(to)) = (i.from.first(), i.to.first()) else { return false };
            from != to && row_of[from.as_str()] >= row_of[to.as_str()]
        })
        .map(|i| {
            let file = i.file.strip_prefix(src()).unwrap().display();
            format!("  src/{file}:{} `{}`  ({} -> {})", i.line, i.text, i.from[0], i.to[0])
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        upward.is_empty(),
        "imports that do not point down the layer order drawn in src/lib.rs (a module may only use \
         modules in lower rows):\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_files_import_each_other_in_a_circle() {
    for binary in [false, true] {
        let found = circles(&imports(&crate_files(binary)));
        let text: Vec<String> = found.iter().map(|c| c.iter().map(describe).collect::<Vec<_>>().join("\n")).collect();
        assert!(found.is_empty(), "files that import each other in a circle:\n{}", text.join("\n\n"));
    }
}
