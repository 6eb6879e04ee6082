#!/usr/bin/env python3
"""List functions longer than a limit (default 80 lines) in C++ sources.

A brace-matching scan, not a parser: comments, strings and character literals are blanked,
then every '{' whose preceding statement text has a parameter list and is not a control
statement or a type/namespace opens a function body; nested bodies (lambdas, local classes)
count toward the enclosing function. A line `// long-function: <reason>` within the three
lines above a function marks it as an accepted exception (listed separately).

usage: tools/long-functions.py [--limit N] [--all] PATH...   (directories are walked)
"""
import argparse
import os
import re
import sys

EXTENSIONS = (".cpp", ".hpp", ".h", ".cc")
NOT_FUNCTION = re.compile(r"\b(if|for|while|switch|catch|namespace|class|struct|enum|union)\b")


def blank_comments_and_strings(text):
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(]*)\(', text[i:])
            if m:
                end = text.find(")" + m.group(1) + '"', i)
                end = n if end < 0 else end + len(m.group(1)) + 2
                out.append(re.sub(r"[^\n]", " ", text[i:end]))
                i = end
            else:
                out.append(c)
                i += 1
        elif c in "\"'":
            if c == "'" and i > 0 and (text[i - 1].isalnum()):  # digit separator 1'000
                out.append(" ")
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(" " * (min(j + 1, n) - i))
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def functions(path):
    raw = open(path, encoding="utf-8", errors="replace").read()
    text = blank_comments_and_strings(raw)
    raw_lines = raw.split("\n")
    stack = []  # one entry per open brace: (is_function_body, start_line, name)
    statement_start = 0
    in_function = 0
    for i, c in enumerate(text):
        if c == "{":
            head = text[statement_start:i]
            is_function = False
            name = ""
            if in_function == 0 and "(" in head and not NOT_FUNCTION.search(head.split("(")[0]) \
                    and not re.search(r"=\s*$", head.strip()) and not head.strip().startswith("#"):
                m = re.search(r"([~\w:<>]+)\s*\(", head)
                name = m.group(1) if m else "?"
                if name not in ("if", "for", "while", "switch", "catch", "return"):
                    is_function = True
            start = text.count("\n", 0, statement_start + len(head) - len(head.lstrip())) + 1
            stack.append((is_function, start, name))
            if is_function:
                in_function += 1
            statement_start = i + 1
        elif c == "}":
            if stack:
                is_function, start, name = stack.pop()
                if is_function:
                    in_function -= 1
                    end = text.count("\n", 0, i) + 1
                    reason = ""
                    for k in range(max(0, start - 4), start):
                        m = re.search(r"long-function:\s*(.*)", raw_lines[k])
                        if m:
                            reason = m.group(1).strip()
                    yield name, start, end - start + 1, reason
            statement_start = i + 1
        elif c == ";":
            statement_start = i + 1
        elif c == "#" and (i == 0 or text[i - 1] == "\n"):
            statement_start = text.find("\n", i) + 1 or len(text)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=80)
    parser.add_argument("--all", action="store_true", help="also list marked exceptions")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    files = []
    for path in args.paths:
        if os.path.isdir(path):
            for root, _, names in os.walk(path):
                files += [os.path.join(root, n) for n in names if n.endswith(EXTENSIONS)]
        else:
            files.append(path)
    over = 0
    for path in sorted(files):
        for name, start, length, reason in functions(path):
            if length > args.limit and (args.all or not reason):
                print(f"{length:5d} {path}:{start} {name}" + (f"  [{reason}]" if reason else ""))
                over += not reason
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
