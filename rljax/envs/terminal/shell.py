"""MiniShell: a deterministic simulated shell over an in-memory file system (echo.md section 8.1).

Supported commands, with GNU-coreutils messages and exit codes (the spec's table, plus the GNU
messages for the cases it leaves open, e.g. "Not a directory" for a path through a file):

    ls [D]   cd D   pwd   cat F   head [-n N] F   tail [-n N] F   grep KEY F   wc -l F   sort F
    find D -name PAT   echo TEXT   mkdir D   touch F   rm F   mv A B   cp A B

Command lines are split like a POSIX shell without expansions: quotes group words (`shlex`),
`>` / `>>` redirect standard output of any command to a file (bash opens the target before the
command runs, so `sort f > f` empties f, as in bash); there are no pipes, globs, variables or
command lists (`|`, `;`, `&&` are plain words, which makes the command a usage error). Options
other than the ones listed are usage errors (`CMD: usage error`, exit 2). `grep KEY F` prints the
lines of F that start with `KEY=` (the spec's key-value grep, not a regex search). `find` lists
its matches depth-first in sorted order; `ls` sorts names bytewise (LC_ALL=C) and joins them with
single spaces. Pure Python: a command costs microseconds.
"""

from __future__ import annotations

import fnmatch
import posixpath
import shlex
from typing import Callable, Mapping, Sequence, Union

from rljax.envs.terminal.backend import CommandResult, check_absolute

# A directory maps names to nodes; a file is its text.
Node = Union[dict, str]

NO_ENTRY = "No such file or directory"
NOT_DIR = "Not a directory"
IS_DIR = "Is a directory"
_REDIRECTS = (">", ">>")


class MiniShell:
    """A simulated shell session over an in-memory tree (a `TerminalBackend`).

    Args:
        files: absolute path -> text of every initial file (parent directories are created).
        dirs: absolute paths of extra (possibly empty) initial directories.
        cwd: the initial working directory (must exist once `files` and `dirs` are created).
    """

    def __init__(
        self, files: Mapping[str, str] | None = None, dirs: Sequence[str] = (), cwd: str = "/"
    ):
        self._root: dict = {}
        for path in dirs:
            self._make_dirs(check_absolute("dirs entry", path))
        for path, text in (files or {}).items():
            path = check_absolute("files key", path)
            if not isinstance(text, str):
                raise ValueError(f"files[{path!r}] must be str, got {type(text).__name__}")
            if path == "/":
                raise ValueError("files key '/' names the root directory, not a file")
            head, _, name = path.rpartition("/")
            parent = self._make_dirs(head or "/")
            if isinstance(parent.get(name), dict):
                raise ValueError(f"files key {path!r} is also a directory")
            parent[name] = text
        cwd = check_absolute("cwd", cwd)
        if not isinstance(self._node([c for c in cwd.split("/") if c]), dict):
            raise ValueError(f"cwd {cwd!r} is not a directory of the initial tree")
        self._cwd = [c for c in cwd.split("/") if c]
        self._commands: dict[str, Callable[[list[str]], CommandResult]] = {
            "ls": self._ls, "cd": self._cd, "pwd": self._pwd, "cat": self._cat, "head": self._head,
            "tail": self._tail, "grep": self._grep, "wc": self._wc, "sort": self._sort, "find": self._find,
            "echo": self._echo, "mkdir": self._mkdir, "touch": self._touch, "rm": self._rm,
            "mv": self._mv, "cp": self._cp,
        }  # fmt: skip

    @property
    def cwd(self) -> str:
        """The current working directory, absolute."""
        return "/" + "/".join(self._cwd)

    def run(self, command: str) -> CommandResult:
        """Runs one command line.

        Args:
            command: e.g. "grep k07 f03" or "echo done > /data/out".

        Returns:
            The command's stdout, stderr and exit code.
        """
        if not isinstance(command, str):
            raise ValueError(f"command must be str, got {type(command).__name__}")
        lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        try:
            words = list(lexer)
        except ValueError:
            return _fail("bash: syntax error: unterminated quoted string", 2)
        argv, targets = [], []
        i = 0
        while i < len(words):
            if words[i] not in _REDIRECTS:
                argv.append(words[i])
                i += 1
                continue
            if i + 1 == len(words) or words[i + 1] in _REDIRECTS:
                token = "newline" if i + 1 == len(words) else words[i + 1]
                return _fail(f"bash: syntax error near unexpected token '{token}'", 2)
            targets.append((words[i + 1], words[i] == ">>"))
            i += 2
        opened = []
        for target, append in targets:
            error, parent, name = self._open_for_writing(target, append)
            if error:
                return error
            opened.append((parent, name))
        if not argv:
            return CommandResult("", "", 0)
        handler = self._commands.get(argv[0])
        result = handler(argv[1:]) if handler else _fail(f"bash: {argv[0]}: command not found", 127)
        if opened:
            parent, name = opened[-1]
            if isinstance(parent.get(name), str):  # the command may have moved or removed it
                parent[name] += result.stdout
            result = CommandResult("", result.stderr, result.exit_code)
        return result

    def read_file(self, path: str) -> str | None:
        """Text of the file at absolute `path`, or None if it is missing or a directory."""
        _, node, error = self._walk(check_absolute("path", path))
        return node if error is None and isinstance(node, str) else None

    def list_dir(self, path: str) -> list[str] | None:
        """Sorted names in the directory at absolute `path`, or None if it is not a directory."""
        _, node, error = self._walk(check_absolute("path", path))
        return sorted(node) if error is None and isinstance(node, dict) else None

    def close(self) -> None:
        """Nothing to release (the tree is garbage-collected)."""

    # -- path resolution ---------------------------------------------------------------------

    def _node(self, components: list[str]) -> Node | None:
        node: Node = self._root
        for name in components:
            if not isinstance(node, dict) or name not in node:
                return None
            node = node[name]
        return node

    def _walk(self, path: str) -> tuple[list[str], Node | None, str | None]:
        """Resolves `path` (absolute or relative to cwd) -> (components, node, error text)."""
        if not path:
            return [], None, NO_ENTRY
        components = [] if path.startswith("/") else list(self._cwd)
        node = self._node(components)
        for part in path.split("/"):
            if part in ("", "."):
                if part == "." and not isinstance(node, dict):
                    return components, None, NOT_DIR
                continue
            if not isinstance(node, dict):
                return components, None, NOT_DIR
            if part == "..":
                components = components[:-1]
                node = self._node(components)
            elif part in node:
                components.append(part)
                node = node[part]
            else:
                return components + [part], None, NO_ENTRY
        if path.endswith("/") and not isinstance(node, dict):
            return components, None, NOT_DIR
        return components, node, None

    def _creation_target(self, path: str) -> tuple[list[str], str, str | None]:
        """(parent components, new name, error) for creating `path`; error if the parent is bad."""
        stripped = path.rstrip("/") or "/"
        head, _, name = stripped.rpartition("/")
        components, parent, error = self._walk(head or ("/" if path.startswith("/") else "."))
        if error is None and not isinstance(parent, dict):
            error = NOT_DIR
        return components, name, error

    def _make_dirs(self, path: str) -> dict:
        node = self._root
        for name in (c for c in path.split("/") if c):
            child = node.setdefault(name, {})
            if not isinstance(child, dict):
                raise ValueError(f"path {path!r} runs through the file {name!r}")
            node = child
        return node

    def _open_for_writing(
        self, target: str, append: bool
    ) -> tuple[CommandResult | None, dict, str]:
        """Opens `target` as bash does before running the command: create, or truncate unless `append`."""
        _, node, error = self._walk(target)
        if error is None and isinstance(node, dict):
            return _fail(f"bash: {target}: {IS_DIR}", 1), self._root, ""
        components, name, error = self._creation_target(target)
        if error:
            return _fail(f"bash: {target}: {error}", 1), self._root, ""
        parent = self._node(components)
        if not append or name not in parent:
            parent[name] = ""
        return None, parent, name

    def _read(self, path: str) -> tuple[str | None, str | None]:
        """(text, None) for a file, (None, error text) otherwise."""
        _, node, error = self._walk(path)
        if error is not None:
            return None, error
        return (None, IS_DIR) if isinstance(node, dict) else (node, None)

    # -- commands ----------------------------------------------------------------------------

    def _ls(self, args: list[str]) -> CommandResult:
        if len(args) > 1 or _has_option(args):
            return _usage("ls")
        target = args[0] if args else "."
        _, node, error = self._walk(target)
        if error is not None:
            return _fail(f"ls: cannot access '{target}': {error}", 2)
        if isinstance(node, str):
            return _ok(target + "\n")
        return _ok(" ".join(sorted(node)) + "\n" if node else "")

    def _cd(self, args: list[str]) -> CommandResult:
        if len(args) != 1 or _has_option(args):
            return _usage("cd")
        components, node, error = self._walk(args[0])
        if error is None and isinstance(node, str):
            error = NOT_DIR
        if error is not None:
            return _fail(f"bash: cd: {args[0]}: {error}", 1)
        self._cwd = components
        return _ok("")

    def _pwd(self, args: list[str]) -> CommandResult:
        return _usage("pwd") if args else _ok(self.cwd + "\n")

    def _cat(self, args: list[str]) -> CommandResult:
        if len(args) != 1 or _has_option(args):
            return _usage("cat")
        text, error = self._read(args[0])
        return _fail(f"cat: {args[0]}: {error}", 1) if error else _ok(text)

    def _head(self, args: list[str]) -> CommandResult:
        return self._head_or_tail("head", args)

    def _tail(self, args: list[str]) -> CommandResult:
        return self._head_or_tail("tail", args)

    def _head_or_tail(self, name: str, args: list[str]) -> CommandResult:
        if len(args) == 1 and not _has_option(args):
            count, path = "10", args[0]
        elif len(args) == 3 and args[0] == "-n" and not _has_option(args[2:]):
            count, path = args[1], args[2]
        else:
            return _usage(name)
        if not count.isdecimal():
            return _fail(f"{name}: invalid number of lines: '{count}'", 1)
        text, error = self._read(path)
        if error == IS_DIR:
            return _fail(f"{name}: error reading '{path}': {error}", 1)
        if error:
            return _fail(f"{name}: cannot open '{path}' for reading: {error}", 1)
        lines, n = _lines(text), int(count)
        return _ok("".join(lines[:n] if name == "head" else lines[len(lines) - n :] if n else []))

    def _grep(self, args: list[str]) -> CommandResult:
        if len(args) != 2 or _has_option(args[:1]):
            return _usage("grep")
        key, path = args
        text, error = self._read(path)
        if error:
            return _fail(f"grep: {path}: {error}", 2)
        matches = [line for line in _lines(text) if line.startswith(key + "=")]
        return (
            _ok("".join(_terminated(line) for line in matches))
            if matches
            else CommandResult("", "", 1)
        )

    def _wc(self, args: list[str]) -> CommandResult:
        if len(args) != 2 or args[0] != "-l":
            return _usage("wc")
        path = args[1]
        text, error = self._read(path)
        if error == IS_DIR:
            return CommandResult(f"0 {path}\n", f"wc: {path}: {error}\n", 1)
        return _fail(f"wc: {path}: {error}", 1) if error else _ok(f"{text.count(chr(10))} {path}\n")

    def _sort(self, args: list[str]) -> CommandResult:
        if len(args) != 1 or _has_option(args):
            return _usage("sort")
        text, error = self._read(args[0])
        if error == IS_DIR:
            return _fail(f"sort: read failed: {args[0]}: {error}", 2)
        if error:
            return _fail(f"sort: cannot read: {args[0]}: {error}", 2)
        return _ok("".join(_terminated(line) for line in sorted(_lines(text))))

    def _find(self, args: list[str]) -> CommandResult:
        if len(args) != 3 or args[1] != "-name" or _has_option(args[:1]):
            return _usage("find")
        start, pattern = args[0], args[2]
        _, node, error = self._walk(start)
        if error is not None:
            return _fail(f"find: '{start}': {error}", 1)
        matches: list[str] = []
        _find_in(node, start, posixpath.basename(start.rstrip("/")) or "/", pattern, matches)
        return _ok("".join(path + "\n" for path in matches))

    def _echo(self, args: list[str]) -> CommandResult:
        return _ok(" ".join(args) + "\n")

    def _mkdir(self, args: list[str]) -> CommandResult:
        if len(args) != 1 or _has_option(args):
            return _usage("mkdir")
        path = args[0]
        _, _, missing = self._walk(path.rstrip("/") or "/")
        components, name, error = self._creation_target(path)
        if missing is None:
            error = "File exists"
        if error:
            return _fail(f"mkdir: cannot create directory '{path}': {error}", 1)
        self._node(components)[name] = {}
        return _ok("")

    def _touch(self, args: list[str]) -> CommandResult:
        if len(args) != 1 or _has_option(args):
            return _usage("touch")
        path = args[0]
        _, _, missing = self._walk(path.rstrip("/") or "/")
        if missing is None:
            return _ok("")
        components, name, error = self._creation_target(path)
        if error:
            return _fail(f"touch: cannot touch '{path}': {error}", 1)
        self._node(components)[name] = ""
        return _ok("")

    def _rm(self, args: list[str]) -> CommandResult:
        if len(args) != 1 or _has_option(args):
            return _usage("rm")
        path = args[0]
        components, node, error = self._walk(path)
        if error is None and isinstance(node, dict):
            error = IS_DIR
        if error:
            return _fail(f"rm: cannot remove '{path}': {error}", 1)
        del self._node(components[:-1])[components[-1]]
        return _ok("")

    def _mv(self, args: list[str]) -> CommandResult:
        return self._transfer("mv", args)

    def _cp(self, args: list[str]) -> CommandResult:
        return self._transfer("cp", args)

    def _transfer(self, name: str, args: list[str]) -> CommandResult:
        """mv and cp: A onto B, or into B when B is a directory (GNU messages)."""
        if len(args) != 2 or _has_option(args):
            return _usage(name)
        source, target = args
        src, node, error = self._walk(source)
        if error:
            return _fail(f"{name}: cannot stat '{source}': {error}", 1)
        if name == "cp" and isinstance(node, dict):
            return _fail(f"cp: -r not specified; omitting directory '{source}'", 1)
        if not src:
            return _fail(f"mv: cannot move '{source}' to '{target}': Device or resource busy", 1)
        dst_dir, dst_node, dst_error = self._walk(target)
        if dst_error is None and isinstance(dst_node, dict):
            shown, parent_components, new_name = (
                target.rstrip("/") + "/" + src[-1],
                dst_dir,
                src[-1],
            )
        else:
            shown = target
            parent_components, new_name, parent_error = self._creation_target(target)
            if parent_error:
                verb = (
                    f"cannot move '{source}' to" if name == "mv" else "cannot create regular file"
                )
                return _fail(f"{name}: {verb} '{target}': {parent_error}", 1)
        dest = parent_components + [new_name]
        parent = self._node(parent_components)
        existing = parent.get(new_name)
        if dest == src:
            return _fail(f"{name}: '{source}' and '{shown}' are the same file", 1)
        if isinstance(node, dict) and dest[: len(src)] == src:
            return _fail(f"mv: cannot move '{source}' to a subdirectory of itself, '{shown}'", 1)
        if isinstance(node, dict) and isinstance(existing, str):
            return _fail(
                f"mv: cannot overwrite non-directory '{shown}' with directory '{source}'", 1
            )
        if isinstance(node, str) and isinstance(existing, dict):
            return _fail(f"{name}: cannot overwrite directory '{shown}' with non-directory", 1)
        if isinstance(existing, dict) and existing:
            return _fail(f"mv: cannot move '{source}' to '{shown}': Directory not empty", 1)
        if name == "mv":
            del self._node(src[:-1])[src[-1]]
            if self._cwd[: len(src)] == src:
                self._cwd = dest + self._cwd[len(src) :]
        parent[new_name] = node
        return _ok("")


def _find_in(node: Node, shown: str, name: str, pattern: str, matches: list[str]) -> None:
    if fnmatch.fnmatchcase(name, pattern):
        matches.append(shown)
    if isinstance(node, dict):
        prefix = shown if shown.endswith("/") else shown + "/"
        for child in sorted(node):
            _find_in(node[child], prefix + child, child, pattern, matches)


def _lines(text: str) -> list[str]:
    """Lines of `text` split at "\\n" only, each keeping its newline (the last may lack one)."""
    parts = text.split("\n")
    return [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _terminated(line: str) -> str:
    return line if line.endswith("\n") else line + "\n"


def _has_option(args: Sequence[str]) -> bool:
    return any(arg.startswith("-") and arg != "-" for arg in args)


def _ok(stdout: str) -> CommandResult:
    return CommandResult(stdout, "", 0)


def _fail(message: str, exit_code: int) -> CommandResult:
    return CommandResult("", message + "\n", exit_code)


def _usage(command: str) -> CommandResult:
    return _fail(f"{command}: usage error", 2)
