"""Code lines of a package: lines that hold code, not comments, blank lines or docstrings.

    python3 bench/loc.py pcapstate        # the total
    python3 bench/loc.py pcapstate -v     # and each module
"""

import ast
import io
import pathlib
import sys
import tokenize

_NOT_CODE = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
             tokenize.DEDENT, tokenize.ENDMARKER)


def code_lines(path: pathlib.Path) -> int:
    src = path.read_text()
    docs: set[int] = set()
    for node in ast.walk(ast.parse(src)):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) \
                and node.body and isinstance(node.body[0], ast.Expr) \
                and isinstance(node.body[0].value, ast.Constant) \
                and isinstance(node.body[0].value.value, str):
            first = node.body[0]
            docs.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type not in _NOT_CODE:
            lines.update(n for n in range(tok.start[0], tok.end[0] + 1) if n not in docs)
    return len(lines)


if __name__ == "__main__":
    total = 0
    for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.py")):
        n = code_lines(path)
        total += n
        if "-v" in sys.argv[2:]:
            print(n, path)
    print("total", total)
