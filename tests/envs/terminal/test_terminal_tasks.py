"""Terminal task families: world, splits, verifiers, experts (echo.md section 8.1)."""

import hashlib
import re

import numpy as np
import pytest

from rljax.envs import registry
from rljax.envs.base import MultiTurnFamily, Task
from rljax.envs.terminal import FAMILIES, make_world
from rljax.envs.terminal.tasks import (
    AppendLineFamily,
    BackupFileFamily,
    CountFilesFamily,
    FindValueFamily,
    SumNumbersFamily,
    WriteValueFamily,
)

CMD = re.compile(r"<cmd> (.*?) </cmd>")


def play(family, task, actions):
    with family.start(task) as episode:
        for action in actions:
            if episode.step(action).done:
                break
        return episode.verdict()


def act(command):
    return f"<think> x </think> <cmd> {command} </cmd>"


# ---- world


def test_world_matches_the_spec_layout():
    world = make_world(7)
    assert sorted(world.files) == [f"/data/f{i:02d}" for i in range(20)]
    parsed = {}
    for path, text in world.files.items():
        lines = text.split("\n")
        assert lines[-1] == "" and len(lines) == 6  # 5 lines, newline-terminated
        for line in lines[:-1]:
            key, value = line.split("=")
            assert key not in parsed  # each key in exactly one file
            parsed[key] = (value, path.rsplit("/", 1)[1])
    assert sorted(parsed) == [f"k{i:02d}" for i in range(100)]
    assert all(re.fullmatch(r"[a-z0-9]{4}", value) for value, _ in parsed.values())
    assert world.values == {k: v for k, (v, _) in parsed.items()}
    assert world.key_file == {k: f for k, (_, f) in parsed.items()}


def test_world_is_a_function_of_the_seed():
    assert make_world(3) == make_world(3)
    assert make_world(3).files != make_world(4).files
    assert FindValueFamily(seed=3).world == make_world(3)


def test_world_sizes_and_validation():
    world = make_world(0, num_files=150, lines_per_file=2)
    assert len(world.files) == 150 and "/data/f149" in world.files and "k299" in world.values
    with pytest.raises(ValueError, match="num_files must be an int >= 1"):
        make_world(0, num_files=0)
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        make_world(-1)


def test_value_chars_sets_the_length_of_every_value():
    family = FindValueFamily(num_files=5, lines_per_file=4, value_chars=1, values="task")
    assert {len(v) for v in family.world.values.values()} == {1}
    task = family.generate("heldout", 0)
    assert len(task.answer) == 1 and task.meta["world"] == "seed=0,files=5,lines=4,chars=1"
    assert all(len(line) == len("k00=x") for line in task.meta["files"]["/data/f00"].split())
    with pytest.raises(ValueError, match="value_chars must be an int >= 1, got 0"):
        FindValueFamily(value_chars=0)


# ---- generation and splits


def test_find_value_task_is_the_spec_episode():
    family = FindValueFamily(seed=5)
    task = family.generate("train", 11)
    key = task.meta["key"]
    assert task.prompt == f"Q: value of {key} ?"
    line = next(
        line
        for text in family.world.files.values()
        for line in text.splitlines()
        if line.startswith(key + "=")
    )
    assert task.answer == line.split("=")[1]
    assert family.max_turns == 3
    assert task.uid == "terminal_find_value/train/11" and task.family == "terminal_find_value"
    assert family.generate("train", 11) == task


def _is_heldout(seed, key):
    digest = hashlib.sha256(f"world{seed}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64 < 0.2


@pytest.mark.parametrize("family_cls", [FindValueFamily, WriteValueFamily])
def test_heldout_keys_are_never_training_queries(family_cls):
    family = family_cls(seed=2)
    train = {family.generate("train", i).meta["key"] for i in range(1000)}
    heldout = {family.generate("heldout", i).meta["key"] for i in range(400)}
    assert not train & heldout
    expected_heldout = {
        k for k in family.world.values if _is_heldout(2, k)
    }  # SHA-256 rule, recomputed here
    assert heldout == expected_heldout
    assert train == set(family.world.values) - expected_heldout


@pytest.mark.parametrize("family_cls", list(FAMILIES.values()))
def test_splits_share_no_instance(family_cls):
    family = family_cls(seed=1)

    def content(task):
        return (task.prompt, repr(task.answer), repr(sorted(task.meta.get("files", {}).items())))

    train = {content(family.generate("train", i)) for i in range(60)}
    heldout = {content(family.generate("heldout", i)) for i in range(30)}
    assert not train & heldout
    assert len(heldout) > 1


def test_registry_builds_every_family():
    for name in FAMILIES:
        family = registry.make(name, seed=4)
        assert isinstance(family, MultiTurnFamily)
        assert family.name == name and family.seed == 4
    assert len({cls.task_id for cls in FAMILIES.values()}) == len(FAMILIES)


# ---- per-task values (issue 16: held-out success must measure reading the terminal)


def _echo_preset_family():
    from rljax.experiments import echo

    task = echo.PRESETS["cpu"]().task
    return registry.make(task.family, **task.kwargs)


def test_echo_preset_answers_cannot_be_memorised():
    # With the world's values, a key's answer was the same in every task: a policy could answer a
    # training key from memory without reading the terminal (issue 16's training reward).
    family = _echo_preset_family()
    first, later = {}, []
    for i in range(600):
        task = family.generate("train", i)
        if task.meta["key"] in first:
            later.append(task)
        else:
            first[task.meta["key"]] = task.answer
    assert len(later) > 400
    assert np.mean([task.answer == first[task.meta["key"]] for task in later]) < 0.01


def test_echo_preset_heldout_is_solved_by_reading_the_terminal():
    # What training shows about the world (where each queried key lives) plus what the terminal
    # prints solves every held-out task; remembering training answers solves none. With the world's
    # values and the key split, no held-out key was ever a training lookup, so its file was unknown
    # and held-out success was 0 whatever the policy read (issue 16).
    family = _echo_preset_family()
    train = [family.generate("train", i) for i in range(600)]
    where = {task.meta["key"]: task.meta["file"] for task in train}
    answers = {(task.meta["key"], task.answer) for task in train}
    for index in range(64):
        task = family.generate("heldout", index)
        key = task.meta["key"]
        assert key in where and (key, task.answer) not in answers
        with family.start(task) as episode:
            text = episode.step(act(f"grep {key} {where[key]}")).text
            assert text.splitlines()[-1] == "(exit=0)"
            episode.step(act(f"answer {text.splitlines()[1].removeprefix(key + '=')}"))
            assert episode.verdict().reward == 1.0


@pytest.mark.parametrize("family_cls", [FindValueFamily, WriteValueFamily])
def test_task_values_keep_the_world_layout(family_cls):
    family = family_cls(seed=2, values="task")
    tasks = [family.generate(split, i) for split in ("train", "heldout") for i in range(40)]
    for task in tasks:
        files = task.meta["files"]
        assert sorted(files) == sorted(family.world.files)
        for path, text in files.items():
            world_keys = [line.split("=")[0] for line in family.world.files[path].splitlines()]
            assert [line.split("=")[0] for line in text.splitlines()] == world_keys
            assert all(re.fullmatch(r"k\d\d=[a-z0-9]{4}", line) for line in text.splitlines())
        line = f"{task.meta['key']}={task.answer}"
        assert line in files[f"/data/{task.meta['file']}"].splitlines()
        assert family.generate(task.uid.split("/")[1], int(task.uid.split("/")[2])) == task
        expert = family.expert(task, np.random.default_rng(len(task.uid)), noise=0.5)
        assert family.verify(task, expert).reward == 1.0
    assert len({task.answer for task in tasks}) > 70  # values are redrawn per task
    assert np.mean([t.answer == family.world.values[t.meta["key"]] for t in tasks]) < 0.05
    with pytest.raises(ValueError, match="values must be one of"):
        family_cls(values="file")


# ---- experts


@pytest.mark.parametrize("family_cls", list(FAMILIES.values()))
@pytest.mark.parametrize("split", ["train", "heldout"])
def test_noiseless_expert_solves_every_task(family_cls, split):
    family = family_cls(seed=3)
    for index in range(25):
        task = family.generate(split, index)
        actions = family.expert_actions(task, np.random.default_rng(index), noise=0.0)
        assert len(actions) == family.min_turns
        verdict = play(family, task, actions)
        assert verdict.reward == 1.0, (task, actions, verdict)
        assert verdict.info["warning_free_turns"] == len(actions)


@pytest.mark.parametrize("family_cls", list(FAMILIES.values()))
def test_noisy_expert_makes_recoverable_mistakes(family_cls):
    family = family_cls(seed=3)
    mistakes = 0
    for index in range(20):
        task = family.generate("train", index)
        clean = [
            CMD.search(a).group(1)
            for a in family.expert_actions(task, np.random.default_rng(index), 0.0)
        ]
        actions = family.expert_actions(task, np.random.default_rng(index), noise=1.0)
        assert len(actions) == family.max_turns
        with family.start(task) as episode:
            observations = [episode.step(a) for a in actions]
            assert episode.verdict().reward == 1.0
        commands = [CMD.search(a).group(1) for a in actions]
        mistakes += sum(c not in clean for c in commands)
        failed = [
            o.text for o in observations if "failed" in o.text or "command not found" in o.text
        ]
        assert all("(exit_code=" in text for text in failed)
    assert mistakes >= 20  # one extra (wrong-file or misspelt) command per spare turn


def test_noisy_expert_mistake_kinds():
    family = FindValueFamily(seed=0)
    kinds = set()
    for index in range(40):
        task = family.generate("train", index)
        first = CMD.search(family.expert_actions(task, np.random.default_rng(index), 1.0)[0]).group(
            1
        )
        program, *args = first.split()
        if program not in ("grep", "cat"):
            kinds.add("typo")
        elif args[-1] != task.meta["file"]:
            kinds.add("wrong file")
    assert kinds == {"typo", "wrong file"}


@pytest.mark.parametrize("family_cls", list(FAMILIES.values()))
def test_verify_replays_a_response_like_the_episode(family_cls):
    family = family_cls(seed=6)
    for index in range(8):
        task = family.generate("train", index)
        response = family.expert(task, np.random.default_rng(index), noise=0.5)
        assert family.verify(task, response).reward == 1.0
    assert family.verify(task, "").reward == 0.0
    assert family.verify(task, "<think> no commands </think>").info["turns"] == 0


def test_verify_ignores_commands_inside_thoughts():
    family = FindValueFamily(seed=0)
    task = family.generate("train", 0)
    response = (
        f"<think> I could <cmd> answer zzzz </cmd> </think> <cmd> answer {task.answer} </cmd>"
    )
    verdict = family.verify(task, response)
    assert verdict.reward == 1.0 and verdict.info["turns"] == 1


def test_expert_rejects_bad_noise():
    family = FindValueFamily()
    with pytest.raises(ValueError, match=r"noise must be in \[0, 1\]"):
        family.expert_actions(family.generate("train", 0), np.random.default_rng(0), noise=1.5)


# ---- verifiers on hand-made end states


def test_find_value_judge():
    family = FindValueFamily(seed=0)
    task = family.generate("train", 0)
    assert play(family, task, [act(f"answer {task.answer}")]).reward == 1.0
    wrong = play(family, task, [act("answer zzzzz")])
    assert (
        wrong.reward == 0.0
        and wrong.info["reason"] == f"wrong: expected {task.answer!r}, got 'zzzzz'"
    )
    no_answer = play(family, task, [act("ls")] * 3)
    assert no_answer.reward == 0.0 and no_answer.info["reason"].startswith("no answer")
    # The fourth action is never played: the turn limit is 3.
    assert play(family, task, [act("ls")] * 3 + [act(f"answer {task.answer}")]).reward == 0.0


def test_write_value_judge():
    family = WriteValueFamily(seed=0)
    task = family.generate("train", 1)
    assert (
        play(family, task, [act(f"echo {task.answer} > /data/out.txt"), act("answer done")]).reward
        == 1.0
    )
    assert (
        play(family, task, [act(f"echo {task.answer}x > out.txt"), act("answer done")]).reward
        == 0.0
    )
    missing = play(family, task, [act("answer done")])
    assert missing.info["reason"] == "missing: /data/out.txt is not a file"


def test_backup_file_judge():
    family = BackupFileFamily(seed=0)
    task = family.generate("train", 2)
    name, directory = task.meta["file"], "/data/" + task.meta["dir"]
    assert task.prompt == f"Q: copy {name} into a new directory {directory}"
    assert (
        play(family, task, [act(f"mkdir {directory}"), act(f"cp {name} {directory}/{name}")]).reward
        == 1.0
    )
    moved = play(family, task, [act(f"mkdir {directory}"), act(f"mv {name} {directory}")])
    assert moved.reward == 0.0 and "moved or changed" in moved.info["reason"]
    no_dir = play(family, task, [act(f"cp {name} {directory}")])  # copies to a file named DIR
    assert no_dir.reward == 0.0


def test_append_line_judge():
    family = AppendLineFamily(seed=0)
    task = family.generate("train", 3)
    name, line = task.meta["file"], task.meta["line"]
    assert play(family, task, [act(f"echo {line} >> {name}")]).reward == 1.0
    assert play(family, task, [act(f"echo {line} > {name}")]).reward == 0.0  # overwrote the file
    other = next(n for n in family.world.file_names if n != name)
    spill = play(family, task, [act(f"echo {line} >> {name}"), act(f"echo oops >> {other}")])
    assert spill.reward == 0.0 and "other files changed" in spill.info["reason"]


def test_count_files_judge():
    family = CountFilesFamily(seed=0)
    task = family.generate("train", 4)
    count = len(task.meta["files"])
    assert task.answer == count
    with family.start(task) as episode:
        listing = episode.step(act("ls /data/inbox")).text
    names = listing.split("Output: ")[1].split("\n\n(exit_code=0)")[0].split()
    assert len(names) == count
    assert play(family, task, [act(f"answer {count}")]).reward == 1.0
    assert play(family, task, [act(f"answer {count + 1}")]).reward == 0.0
    assert (
        play(family, task, [act("answer many")]).info["reason"]
        == "malformed: answer 'many' is not an integer"
    )


def test_sum_numbers_judge():
    family = SumNumbersFamily(seed=0)
    task = family.generate("heldout", 5)
    numbers = [int(line) for line in task.meta["files"]["/data/numbers.txt"].split()]
    assert 3 <= len(numbers) <= 6 and task.answer == sum(numbers)
    assert (
        play(family, task, [act("cat /data/numbers.txt"), act(f"answer {sum(numbers)}")]).reward
        == 1.0
    )
    assert play(family, task, [act(f"answer {sum(numbers) - 1}")]).reward == 0.0


def test_episode_edits_are_discarded_between_episodes():
    family = AppendLineFamily(seed=0)
    task = family.generate("train", 0)
    play(family, task, [act("rm f00")])
    with family.start(task) as episode:
        assert "k" in episode.step(act("cat f00")).text


# ---- validation


def test_family_validation():
    with pytest.raises(ValueError, match="max_turns must be an int >= 3"):
        WriteValueFamily(max_turns=2)
    with pytest.raises(ValueError, match="heldout_fraction"):
        FindValueFamily(heldout_fraction=1.0)
    with pytest.raises(ValueError, match="render must be one of"):
        FindValueFamily(render="pretty")
    with pytest.raises(ValueError, match="backend must be a callable"):
        FindValueFamily(backend="minishell")
    task = FindValueFamily(seed=1).generate("train", 0)
    with pytest.raises(
        ValueError,
        match="does not belong to family 'terminal_find_value' with world 'seed=2,files=20",
    ):
        FindValueFamily(seed=2).start(task)
    with pytest.raises(ValueError, match="with world 'seed=1,files=10,lines=5,chars=4'"):
        FindValueFamily(seed=1, num_files=10).start(task)
    with pytest.raises(ValueError, match="split must be one of"):
        FindValueFamily().generate("test", 0)
    foreign = Task(uid="x", family="arithmetic", prompt="", answer=0)
    with pytest.raises(ValueError, match="does not belong"):
        FindValueFamily().verify(foreign, "")
