"""The one reader of the toolkit's text files (label files, list files): UTF-8 with or without a byte-order mark.

Rules, the same for every file: a UTF-8 BOM is dropped; a file that is not UTF-8 is an error naming it; line endings
(`\\n`, `\\r\\n`) are removed. Label files (`label.txt`: one class name per line, in label-id order) are stricter:
names are stripped of surrounding whitespace, trailing blank lines are ignored, a blank line between names is an
error (it would shift every later label id), and a name given twice is an error naming both lines.
"""

import os
from collections.abc import Iterator
from pathlib import Path


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """Yield `(line_number, line)` for the non-blank lines of a UTF-8 text file (BOM dropped), endings removed."""
    try:
        with open(path, encoding="utf-8-sig") as handle:
            for line_number, line in enumerate(handle, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield line_number, line
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 text file ({error.reason} at byte {error.start}).") from error


def read_label_names(path: str | os.PathLike) -> list[str]:
    """The class names of a label file, in label-id order (see the module docstring for the rules)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Label file {path} does not exist.")
    numbered = list(iter_lines(path))
    if not numbered:
        raise ValueError(f"{path} is empty: expected one label name per line.")
    first_line, last_line = numbered[0][0], numbered[-1][0]
    if first_line != 1 or last_line - first_line + 1 != len(numbered):
        present = {number for number, _ in numbered}
        blank = next(number for number in range(1, last_line) if number not in present)
        raise ValueError(f"{path}, line {blank}: blank line; expected one label name per line.")
    names = [line.strip() for _, line in numbered]
    first_seen: dict[str, int] = {}
    for line_number, name in enumerate(names, start=1):
        if name in first_seen:
            raise ValueError(
                f"{path}: label name {name!r} appears twice, on lines {first_seen[name]} and {line_number}."
            )
        first_seen[name] = line_number
    return names
