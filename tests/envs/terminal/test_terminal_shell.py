"""MiniShell against echo.md section 8.1's command table (exact strings) and against GNU coreutils."""

import os
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rljax.envs.terminal.backend import CommandResult
from rljax.envs.terminal.shell import MiniShell

FILES = {
    "/data/f00": "k01=ab12\nk02=cd34\nk03=ef56\n",
    "/data/f01": "k05=zz99\nk04=yy88\n",
    "/data/sub/inner": "x=1\n",
}


@pytest.fixture
def shell():
    return MiniShell(FILES, dirs=["/data/empty"], cwd="/data")


def ok(stdout=""):
    return CommandResult(stdout, "", 0)


def err(message, code):
    return CommandResult("", message + "\n", code)


# Each row: command, expected result (written by hand from the spec's table and GNU coreutils).
SPEC_TABLE = [
    ("ls", ok("empty f00 f01 sub\n")),
    ("ls /data/sub", ok("inner\n")),
    ("ls empty", ok("")),
    ("ls f00", ok("f00\n")),
    ("ls nope", err("ls: cannot access 'nope': No such file or directory", 2)),
    ("pwd", ok("/data\n")),
    ("cd nope", err("bash: cd: nope: No such file or directory", 1)),
    ("cd f00", err("bash: cd: f00: Not a directory", 1)),
    ("cat f00", ok(FILES["/data/f00"])),
    ("cat /data/sub/inner", ok("x=1\n")),
    ("cat sub/../f01", ok(FILES["/data/f01"])),
    ("cat nope", err("cat: nope: No such file or directory", 1)),
    ("cat sub", err("cat: sub: Is a directory", 1)),
    ("cat f00/x", err("cat: f00/x: Not a directory", 1)),
    ("head -n 2 f00", ok("k01=ab12\nk02=cd34\n")),
    ("head -n 0 f00", ok("")),
    ("head f01", ok(FILES["/data/f01"])),
    ("tail -n 1 f00", ok("k03=ef56\n")),
    ("tail -n 9 f01", ok(FILES["/data/f01"])),
    ("head -n 2 nope", err("head: cannot open 'nope' for reading: No such file or directory", 1)),
    ("tail -n 2 nope", err("tail: cannot open 'nope' for reading: No such file or directory", 1)),
    ("head -n x f00", err("head: invalid number of lines: 'x'", 1)),
    ("tail -n -3 f00", err("tail: invalid number of lines: '-3'", 1)),
    ("grep k02 f00", ok("k02=cd34\n")),
    ("grep k0 f00", CommandResult("", "", 1)),
    ("grep cd34 f00", CommandResult("", "", 1)),
    ("grep k02 nope", err("grep: nope: No such file or directory", 2)),
    ("wc -l f00", ok("3 f00\n")),
    ("wc -l nope", err("wc: nope: No such file or directory", 1)),
    ("sort f01", ok("k04=yy88\nk05=zz99\n")),
    ("sort nope", err("sort: cannot read: nope: No such file or directory", 2)),
    ("find /data -name 'f0*'", ok("/data/f00\n/data/f01\n")),
    ("find . -name inner", ok("./sub/inner\n")),
    ("find / -name data", ok("/data\n")),
    ("find sub -name x", ok("")),
    ("find nope -name x", err("find: 'nope': No such file or directory", 1)),
    ("echo hello world", ok("hello world\n")),
    ("echo 'a  b'", ok("a  b\n")),
    ("echo", ok("\n")),
    ("mkdir sub", err("mkdir: cannot create directory 'sub': File exists", 1)),
    ("mkdir f00", err("mkdir: cannot create directory 'f00': File exists", 1)),
    ("mkdir a/b", err("mkdir: cannot create directory 'a/b': No such file or directory", 1)),
    ("touch a/b", err("touch: cannot touch 'a/b': No such file or directory", 1)),
    ("rm nope", err("rm: cannot remove 'nope': No such file or directory", 1)),
    ("rm sub", err("rm: cannot remove 'sub': Is a directory", 1)),
    ("mv nope x", err("mv: cannot stat 'nope': No such file or directory", 1)),
    ("cp nope x", err("cp: cannot stat 'nope': No such file or directory", 1)),
    ("ls a b", err("ls: usage error", 2)),
    ("ls -l", err("ls: usage error", 2)),
    ("cat f00 f01", err("cat: usage error", 2)),
    ("cat f00 | grep k01", err("cat: usage error", 2)),
    ("grep -c k01 f00", err("grep: usage error", 2)),
    ("wc f00", err("wc: usage error", 2)),
    ("head -n 1", err("head: usage error", 2)),
    ("find /data", err("find: usage error", 2)),
    ("cd", err("cd: usage error", 2)),
    ("pwd x", err("pwd: usage error", 2)),
    ("rm -r sub", err("rm: usage error", 2)),
    ("mv f00", err("mv: usage error", 2)),
    ("python3 -c 1", err("bash: python3: command not found", 127)),
    ("answer ab12", err("bash: answer: command not found", 127)),
    ("cat 'f00", err("bash: syntax error: unterminated quoted string", 2)),
    ("echo hi >", err("bash: syntax error near unexpected token 'newline'", 2)),
    ("echo x > sub", err("bash: sub: Is a directory", 1)),
    ("echo x > a/b", err("bash: a/b: No such file or directory", 1)),
    ("", ok("")),
    ("cat f\0", err("cat: f\0: No such file or directory", 1)),
]


@pytest.mark.parametrize(
    "command,expected", SPEC_TABLE, ids=[row[0] or "<empty>" for row in SPEC_TABLE]
)
def test_command_table(shell, command, expected):
    assert shell.run(command) == expected


def test_cd_relative_absolute_and_dotdot(shell):
    assert shell.run("cd sub") == ok()
    assert shell.run("pwd") == ok("/data/sub\n")
    assert shell.run("cat inner") == ok("x=1\n")
    assert shell.run("cat ../f01") == ok(FILES["/data/f01"])
    assert shell.run("cd ../..") == ok()
    assert shell.run("pwd") == ok("/\n")
    assert shell.run("cd ..") == ok()  # the parent of / is /
    assert shell.run("pwd") == ok("/\n")
    assert shell.run("ls") == ok("data\n")
    assert shell.run("cd /data/sub/") == ok()
    assert shell.run("pwd") == ok("/data/sub\n")


def test_echo_redirection_writes_and_appends(shell):
    assert shell.run("echo one > out") == ok()
    assert shell.run("echo two >> out") == ok()
    assert shell.run("echo three>>/data/out") == ok()
    assert shell.read_file("/data/out") == "one\ntwo\nthree\n"
    assert shell.run("echo fresh > out") == ok()
    assert shell.read_file("/data/out") == "fresh\n"


def test_redirect_opens_target_before_the_command_runs(shell):
    # bash truncates f01 before sort reads it, so f01 ends up empty; a failing command still creates its target.
    assert shell.run("sort f01 > f01") == ok()
    assert shell.read_file("/data/f01") == ""
    assert shell.run("cat nope > created") == err("cat: nope: No such file or directory", 1)
    assert shell.read_file("/data/created") == ""


def test_mkdir_touch_rm_mv_cp_change_the_tree(shell):
    assert shell.run("mkdir new") == ok()
    assert shell.run("touch new/a") == ok()
    assert shell.list_dir("/data/new") == ["a"]
    assert shell.run("touch f00") == ok()
    assert shell.read_file("/data/f00") == FILES["/data/f00"]  # touch leaves contents alone
    assert shell.run("cp f00 new") == ok()
    assert shell.read_file("/data/new/f00") == FILES["/data/f00"]
    assert shell.run("cp f01 new/g") == ok()
    assert shell.read_file("/data/new/g") == FILES["/data/f01"]
    assert shell.run("mv new/g /data/empty/h") == ok()
    assert shell.list_dir("/data/new") == ["a", "f00"]
    assert shell.read_file("/data/empty/h") == FILES["/data/f01"]
    assert shell.run("mv f01 f00") == ok()  # overwrite
    assert shell.read_file("/data/f00") == FILES["/data/f01"]
    assert shell.read_file("/data/f01") is None
    assert shell.run("rm f00") == ok()
    assert shell.list_dir("/data") == ["empty", "new", "sub"]


def test_mv_of_the_working_directory_keeps_the_session_inside_it(shell):
    assert shell.run("cd sub") == ok()
    assert shell.run("mv /data/sub /data/moved") == ok()
    assert shell.run("pwd") == ok("/data/moved\n")
    assert shell.run("cat inner") == ok("x=1\n")


def test_read_file_and_list_dir(shell):
    assert shell.read_file("/data/f00") == FILES["/data/f00"]
    assert shell.read_file("/data/sub") is None
    assert shell.read_file("/data/nope") is None
    assert shell.list_dir("/data") == ["empty", "f00", "f01", "sub"]
    assert shell.list_dir("/data/f00") is None
    with pytest.raises(ValueError, match="absolute"):
        shell.read_file("f00")


def test_constructor_rejects_bad_trees():
    with pytest.raises(ValueError, match="absolute"):
        MiniShell({"data/f": "x"})
    with pytest.raises(ValueError, match="must be str"):
        MiniShell({"/f": 3})
    with pytest.raises(ValueError, match="cwd"):
        MiniShell({"/data/f": "x"}, cwd="/data/f")
    with pytest.raises(ValueError, match="runs through the file"):
        MiniShell({"/a": "x", "/a/b": "y"})


def test_sessions_do_not_share_state():
    first, second = MiniShell(FILES, cwd="/data"), MiniShell(FILES, cwd="/data")
    first.run("rm f00")
    assert second.read_file("/data/f00") == FILES["/data/f00"]


# ---- parity with GNU coreutils + bash (an independent oracle) for the commands whose spec text is GNU's.

PARITY_COMMANDS = [
    "cat f00", "cat nope", "cat sub", "cat f00/x", "cat sub/../f01",
    "head -n 1 f00", "head -n 0 f00", "head -n x f00", "head -n 2 nope", "head sub", "head f00",
    "tail -n 1 f00", "tail -n 2 nope", "tail -n x f00", "tail sub", "tail -n 5 f01",
    "grep k01 nope", "grep k01 sub", "grep k04 f01",
    "wc -l f00", "wc -l nope", "wc -l sub", "wc -l empty/../f01",
    "sort f00", "sort f01", "sort nope", "sort sub",
    "find sub -name inner", "find sub -name x", "find nope -name x", "find f00 -name f00", "find f00/x -name y",
    "ls nope", "ls f00", "ls f00/x",
    "mkdir sub", "mkdir a/b", "mkdir newdir", "mkdir f00/x",
    "touch a/b", "touch f00", "touch newfile",
    "rm nope", "rm sub", "rm f00/x", "rm f00",
    "mv nope x", "mv f00 a/b", "mv f00 f00", "mv sub sub/x", "mv sub f00", "mv f00 g", "mv f00 sub", "mv f01 empty/",
    "cp nope x", "cp sub x", "cp f00 a/b", "cp f00 f00", "cp f00 sub", "cp f00 g", "cp f00 sub/inner",
    "echo hello world", "echo a b > out", "echo a >> f00", "sort f01 > f01", "cat nope > out",
]  # fmt: skip


def _gnu_available():
    if shutil.which("bash") is None or shutil.which("cat") is None:
        return False
    version = subprocess.run(["cat", "--version"], capture_output=True, text=True)
    return "GNU coreutils" in version.stdout


def _host_tree(root):
    tree = {}
    for directory, dir_names, file_names in os.walk(root):
        rel = os.path.relpath(directory, root)
        prefix = "/data" if rel == "." else "/data/" + rel
        if not dir_names and not file_names:
            tree[prefix + "/"] = None
        for name in file_names:
            with open(os.path.join(directory, name)) as f:
                tree[f"{prefix}/{name}"] = f.read()
    return tree


def _mini_tree(shell, path="/data"):
    tree, names = {}, shell.list_dir(path)
    if not names:
        tree[path + "/"] = None
    for name in names:
        child = f"{path}/{name}"
        text = shell.read_file(child)
        tree.update({child: text} if text is not None else _mini_tree(shell, child))
    return tree


@pytest.mark.skipif(not _gnu_available(), reason="needs bash and GNU coreutils")
@pytest.mark.parametrize("command", PARITY_COMMANDS)
def test_parity_with_gnu_coreutils(tmp_path, command):
    root = tmp_path / "data"
    for path, text in FILES.items():
        host = root / path.removeprefix("/data/")
        host.parent.mkdir(parents=True, exist_ok=True)
        host.write_text(text)
    (root / "empty").mkdir()
    real = subprocess.run(["bash", "-c", command], cwd=root, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "LC_ALL": "C"})  # fmt: skip
    shell = MiniShell(FILES, dirs=["/data/empty"], cwd="/data")
    assert shell.run(command) == CommandResult(real.stdout, real.stderr, real.returncode)
    assert _mini_tree(shell) == _host_tree(root)


WORDS = [
    "ls",
    "cd",
    "cat",
    "head",
    "tail",
    "grep",
    "wc",
    "sort",
    "find",
    "echo",
    "mkdir",
    "touch",
    "rm",
    "mv",
    "cp",
    "pwd",
    "-n",
    "-l",
    "-name",
    "1",
    "k01",
    "f00",
    "sub",
    "/",
    "..",
    ".",
    "sub/",
    "/data",
    "'",
    ">",
    ">>",
    "|",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(WORDS), max_size=6).map(" ".join), st.integers(1, 4))
def test_any_command_sequence_gives_a_result(command, repeats):
    shell = MiniShell(FILES, dirs=["/data/empty"], cwd="/data")
    for _ in range(repeats):
        result = shell.run(command)
        assert isinstance(result.stdout, str) and isinstance(result.stderr, str)
        assert result.exit_code in (0, 1, 2, 127)
        assert (result.exit_code == 0) or result.stderr or result.exit_code == 1  # grep's silent 1
    assert shell.list_dir(shell.cwd) is not None  # the working directory always exists
