"""The static tree's version and module graph as start-up computes them, on real files."""

from __future__ import annotations

from pathlib import Path

from realtime.http.assets import module_graph, tree_version


def test_the_version_follows_every_byte_and_name(tmp_path: Path) -> None:
    """Same files, same version; a changed byte, a renamed or an added file, another version."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.js").write_text("export const a = 1;\n")
    (tmp_path / "sub" / "b.js").write_text("export const b = 2;\n")
    first = tree_version(tmp_path)
    assert tree_version(tmp_path) == first
    (tmp_path / "sub" / "b.js").write_text("export const b = 3;\n")
    changed = tree_version(tmp_path)
    assert changed != first
    (tmp_path / "sub" / "b.js").rename(tmp_path / "sub" / "c.js")
    assert tree_version(tmp_path) != changed
    (tmp_path / "sub" / "c.js").rename(tmp_path / "sub" / "b.js")
    assert tree_version(tmp_path) == changed
    (tmp_path / "d.css").write_text("")
    assert tree_version(tmp_path) != changed


def test_the_graph_follows_every_kind_of_import_and_stays_in_the_tree(tmp_path: Path) -> None:
    """Named, side-effect and re-exporting imports, ./ and ../; not a URL, a bare name, a path out of the tree, none."""
    root = tmp_path / "static"
    (root / "lib").mkdir(parents=True)
    (tmp_path / "outside.js").write_text("export const z = 0;\n")  # a file, but not under root
    (root / "entry.js").write_text(
        'import { a } from "./lib/a.js";\nimport "./side.js";\nexport { c } from "./lib/c.js";\n'
        'import x from "https://cdn.example/x.js";\nimport y from "lodash";\n')
    (root / "side.js").write_text("console.log(1);\n")
    (root / "lib" / "a.js").write_text('import { b } from "../b.js";\nexport const a = b;\n')
    (root / "lib" / "c.js").write_text(
        'import {\n  a,\n} from "./a.js";\nimport z from "../../outside.js";\nimport "./gone.js";\n'
        'export const c = a;\n')
    (root / "b.js").write_text("export const b = 1;\n")
    graph = module_graph(root, "entry.js")
    assert graph[0] == "entry.js"
    assert sorted(graph) == ["b.js", "entry.js", "lib/a.js", "lib/c.js", "side.js"]
    assert module_graph(root, "missing.js") == []
