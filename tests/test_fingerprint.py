"""Fingerprints: masking, template mining, stability, state, the CLI, Loghub accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.errors import InputError
from agent.fingerprint import VERSION, Fingerprinter, mask
from agent.loghub import evaluate_dir, grouping_accuracy, read_dataset
from agent.models import FingerprintResult

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data" / "fingerprint"
LOGHUB = Path(__file__).parents[2] / "shared" / "data" / "loghub"
TRIAGE_STREAM = Path(__file__).parents[2] / "shared" / "contracts" / "examples" / "triage-stream"

MASK_CASES = json.loads((DATA / "mask_cases.json").read_text())


def run_cli(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "agent", *args], input=input, capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def history() -> list[tuple[str, str, str | None]]:
    """A mixed history: several sources/services, families of names, numbers, paths."""
    out: list[tuple[str, str, str | None]] = []
    users = ["alice", "bob", "carol", "dave", "erin"]
    for i in range(60):
        u = users[i % len(users)]
        out.append((f"session opened for user {u} by (uid={1000 + i})", "log", "sshd"))
        out.append((f"Failed password for {u} from 10.0.{i}.7 port {40000 + i} ssh2", "log", "sshd"))
        out.append((f"Received block blk_{i * 7919} of size {i * 13} from /10.1.0.{i}", "log", "hdfs"))
        out.append((f"cannot open /srv/app/cache/{i}.tmp: permission denied", "log", None))
        out.append((f"dial tcp 10.0.0.5:5432: connect: {'connection refused' if i % 2 else 'no route to host'}",
                    "log", "api"))
        out.append((f"GET https://gw.example.com/healthz -> 504 Gateway Timeout ({i / 7:.3f} s)", "health", "gw"))
        out.append((f"service state changed to {['RUNNING', 'FAILED', 'STOPPED'][i % 3]}", "log", "api"))
    return out


# --------------------------------------------------------------------------- masking


@pytest.mark.parametrize("case", MASK_CASES, ids=[c["what"] for c in MASK_CASES])
def test_mask_replaces_what_varies(case: dict) -> None:
    assert mask(case["message"]) == case["masked"]


def test_mask_is_idempotent() -> None:
    for case in MASK_CASES:
        assert mask(case["masked"]) == case["masked"]


# --------------------------------------------------------------------------- fingerprints


def test_fingerprint_shape_and_template() -> None:
    fp, template = Fingerprinter().fingerprint("Received block blk_3587 of size 67108864 from /10.251.42.84")
    assert fp.startswith(f"{VERSION}:")
    assert len(fp) > 10 and all(c in "0123456789abcdef" for c in fp.split(":", 1)[1])
    assert template == "Received block <*> of size <*> from <*>"


def test_same_event_with_different_variables_shares_a_fingerprint() -> None:
    f = Fingerprinter()
    a = f.fingerprint("token validation failed: token used before issued (iat=1764905047, now=1764904987, "
                      "skew leeway 30 s) for client 4e4fb3c1-2b5f-4e93-ab8d-1983416be858", "log", "auth")
    b = f.fingerprint("token validation failed: token used before issued (iat=1764991222, now=1764991174, "
                      "skew leeway 45 s) for client 86176d98-84b8-472a-aba2-2e57d4d81cd4", "log", "auth")
    assert a == b


@pytest.mark.parametrize("one, other", [
    ("upload failed; uid=1 err=timeout", "upload failed; uid=2 err=refused"),
    ("dial tcp 10.0.0.5:5432: connect: connection refused", "dial tcp 10.0.0.5:5432: connect: permission denied"),
    ("connection refused", "permission denied"),
    ("Error: connection refused", "Error: permission denied"),
    ("cupsd startup succeeded", "cupsd shutdown succeeded"),
    ("open through proxy proxy.example.com:5070 HTTPS", "open through proxy proxy.example.com:5070 SOCKS5"),
    ("Block broadcast_1 stored as bytes in memory (estimated size 5.2 KB, free 5.2 KB)",
     "Block broadcast_1 stored as values in memory (estimated size 8.8 KB, free 14.0 KB)"),
])
def test_different_constant_words_do_not_share_a_fingerprint(one: str, other: str) -> None:
    f = Fingerprinter()
    for _ in range(3):  # repetition is no evidence that a word varies
        assert f.fingerprint(one)[0] != f.fingerprint(other)[0]


def test_two_or_three_alternatives_of_a_short_or_all_caps_word_stay_apart() -> None:
    f = Fingerprinter()
    short = {f.fingerprint(f"cupsd {w} succeeded")[0] for w in ("startup", "shutdown", "restart")}
    states = {f.fingerprint(f"service state changed to {w}")[0] for w in ("RUNNING", "FAILED", "STOPPED")}
    assert len(short) == 3 and len(states) == 3


def test_a_crowded_shape_turns_its_many_words_into_variables() -> None:
    import random

    rnd = random.Random(7)
    vocab = ["".join(rnd.choice("ABCDEFGHIJ") for _ in range(6)) for _ in range(200)]
    msgs = [f"job {rnd.choice(vocab)} failed on {rnd.choice(vocab)} with {rnd.choice(vocab)} reason" for _ in range(3000)]
    f = Fingerprinter()
    result = f.fingerprint_many(msgs)
    # without this the miner would found ~3000 clusters and compare each new one with all before it
    assert len(f) < 100
    assert result[-1][1] == "job <*> failed on <*> with <*> reason"
    assert len({fp for fp, _ in result}) == 1


def test_source_and_service_are_part_of_the_identity() -> None:
    f = Fingerprinter()
    msg = "backup-verify exited with status 1"
    fps = {f.fingerprint(msg, "cron", "backup")[0], f.fingerprint(msg, "log", "backup")[0],
           f.fingerprint(msg, "log", "other")[0], f.fingerprint(msg)[0]}
    assert len(fps) == 4
    assert f.fingerprint(msg, "log", None) == f.fingerprint(msg, "log", "")


def test_a_word_seen_where_others_hold_ids_is_a_variable() -> None:
    f = Fingerprinter()
    first = f.fingerprint("Invalid user webmaster from 173.234.31.186")
    second = f.fingerprint("Invalid user test9 from 52.80.34.196")
    assert second[0] == first[0]
    assert second[1] == "Invalid user <*> from <*>"


# --------------------------------------------------------------------------- stability


def test_fingerprint_does_not_change_when_the_template_gains_a_wildcard() -> None:
    f = Fingerprinter()
    fp, template = f.fingerprint("Invalid user webmaster from 173.234.31.186")
    assert template == "Invalid user webmaster from <*>"
    f.fingerprint("Invalid user oracle7 from 10.0.0.1")
    again, widened = f.fingerprint("Invalid user webmaster from 173.234.31.186")
    assert again == fp and widened == "Invalid user <*> from <*>"


def test_a_third_name_makes_a_variable_without_changing_earlier_fingerprints() -> None:
    f = Fingerprinter()
    alice = f.fingerprint("session closed for user alice")
    bob = f.fingerprint("session closed for user bob")
    assert alice[0] != bob[0] and alice[1] == "session closed for user alice"
    carol = f.fingerprint("session closed for user carol")
    assert carol == (alice[0], "session closed for user <*>")
    assert f.fingerprint("session closed for user dave")[0] == alice[0]
    # bob keeps his fingerprint (stability) but shows the family's template
    assert f.fingerprint("session closed for user bob") == (bob[0], "session closed for user <*>")
    # mined as a whole (the CLI), the family is one group
    batch = Fingerprinter().fingerprint_many(f"session closed for user {u}" for u in ("alice", "bob", "carol"))
    assert len(set(batch)) == 1 and batch[0][1] == "session closed for user <*>"


def test_same_message_keeps_its_fingerprint_as_history_grows() -> None:
    f = Fingerprinter()
    msgs = history()
    first = {(m, s, v): f.fingerprint(m, s, v)[0] for m, s, v in msgs[:50]}
    for m, s, v in msgs[50:]:
        f.fingerprint(m, s, v)
    for (m, s, v), fp in first.items():
        assert f.fingerprint(m, s, v)[0] == fp


def test_two_instances_fed_alike_agree() -> None:
    msgs = history()
    a, b = Fingerprinter(), Fingerprinter()
    assert [a.fingerprint(m, s, v) for m, s, v in msgs] == [b.fingerprint(m, s, v) for m, s, v in msgs]
    # a message's cluster is founded by its masked form alone: no history needed for the first one
    assert Fingerprinter().fingerprint(*msgs[0])[0] == a.fingerprint(*msgs[0])[0]


def test_deterministic_across_processes(tmp_path: Path) -> None:
    msgs = history()
    src = tmp_path / "msgs.json"
    src.write_text(json.dumps(msgs))
    code = ("import json,sys\nfrom agent.fingerprint import Fingerprinter\n"
            "f=Fingerprinter()\nmsgs=json.load(open(sys.argv[1]))\n"
            "print(json.dumps([f.fingerprint(m,s,v) for m,s,v in msgs]))")
    here = Fingerprinter()
    expected = [list(here.fingerprint(m, s, v)) for m, s, v in msgs]
    for seed in ("1", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        proc = subprocess.run([sys.executable, "-c", code, str(src)], capture_output=True, text=True,
                              cwd=REPO, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == expected


# --------------------------------------------------------------------------- state


def test_exported_state_gives_a_new_instance_the_same_fingerprints() -> None:
    msgs = history()
    old, later = msgs[:200], msgs[200:]
    original = Fingerprinter()
    seen = [original.fingerprint(m, s, v)[0] for m, s, v in old]
    state = json.loads(json.dumps(original.export_state()))  # as it would be stored
    restored = Fingerprinter(state=state)
    assert len(restored) == len(original)
    again = [restored.fingerprint(m, s, v) for m, s, v in old]
    assert [fp for fp, _ in again] == seen
    assert again == [original.fingerprint(m, s, v) for m, s, v in old]
    # and both keep deciding alike on what comes next
    assert [restored.fingerprint(m, s, v) for m, s, v in later] == [original.fingerprint(m, s, v) for m, s, v in later]
    assert restored.export_state() == original.export_state()


def test_state_keeps_linked_names_and_their_family() -> None:
    f = Fingerprinter()
    fps = [f.fingerprint(f"session closed for user {u}")[0] for u in ("alice", "bob", "carol")]
    restored = Fingerprinter(state=f.export_state())
    assert restored.fingerprint("session closed for user bob") == (fps[1], "session closed for user <*>")
    assert restored.fingerprint("session closed for user zed")[0] == fps[0]


def test_state_saved_in_cycles_gives_another_process_the_same_fingerprints(tmp_path: Path) -> None:
    msgs = history()
    f = Fingerprinter()
    seen = []
    saved: dict[str, dict] = {}
    for chunk in (msgs[:150], msgs[150:300]):  # two cycles, each saving only what changed
        seen += [f.fingerprint(*m)[0] for m in chunk]
        saved.update({row["fingerprint"]: row for row in f.take_changes()})
    state = tmp_path / "state.json"
    state.write_text(json.dumps(list(saved.values())))
    src = tmp_path / "msgs.json"
    src.write_text(json.dumps(msgs[:300]))
    code = ("import json,sys\nfrom agent.fingerprint import Fingerprinter\n"
            "f=Fingerprinter(state=json.load(open(sys.argv[1])))\n"
            "print(json.dumps([f.fingerprint(m,s,v)[0] for m,s,v in json.load(open(sys.argv[2]))]))")
    proc = subprocess.run([sys.executable, "-c", code, str(state), str(src)], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == seen
    assert Fingerprinter(state=saved.values()).export_state() == f.export_state()


def test_take_changes_returns_only_what_changed() -> None:
    f = Fingerprinter()
    f.fingerprint("Received block blk_1 of size 5 from /10.0.0.1")
    f.fingerprint("PacketResponder 1 for block blk_1 terminating")
    first = f.take_changes()
    assert len(first) == 2 and {"fingerprint", "founding", "template", "root", "keys", "seq"} <= set(first[0])
    assert f.take_changes() == []
    f.fingerprint("Received block blk_2 of size 9 from /10.0.0.2")  # same masked message: nothing new
    assert f.take_changes() == []
    f.fingerprint("Deleting block blk_2 file /data/blk_2")
    changed = f.take_changes()
    assert len(changed) == 1 and changed[0]["template"] == "Deleting block <*> file <*>"


def test_state_of_another_version_is_refused() -> None:
    assert Fingerprinter().export_state() == []
    f = Fingerprinter()
    f.fingerprint("x 1")
    state = f.export_state()
    state[0]["v"] = 99
    with pytest.raises(ValueError, match="version"):
        Fingerprinter(state=state)


# --------------------------------------------------------------------------- triage stream


@pytest.mark.skipif(not TRIAGE_STREAM.is_dir(), reason=f"{TRIAGE_STREAM} is absent")
def test_grouping_agrees_with_the_triage_stream_failure_modes() -> None:
    expected = {}
    for line in (TRIAGE_STREAM / "expected.jsonl").read_text().splitlines():
        row = json.loads(line)
        expected[row["signal_id"]] = row["verdict"]
    f = Fingerprinter()
    modes: set[str] = set()
    checked = 0
    for name in ("day1.jsonl", "day2.jsonl"):
        for line in (TRIAGE_STREAM / name).read_text().splitlines():
            s = json.loads(line)
            fp, _ = f.fingerprint(s["message"], s["source"], s.get("service"))
            verdict = expected[s["id"]]
            if verdict == "new":
                assert fp not in modes, f"{s['id']} is a new failure mode but shares {fp}: {s['message']}"
                modes.add(fp)
                checked += 1
            elif verdict in ("ongoing", "recurrence"):
                assert fp in modes, f"{s['id']} is {verdict} but its fingerprint is new: {s['message']}"
                checked += 1
    assert checked > 10


# --------------------------------------------------------------------------- CLI


def test_cli_json_shape(tmp_path: Path) -> None:
    src = DATA / "messages.txt"
    lines = src.read_text().splitlines()
    proc = run_cli("fingerprint", str(src), "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert len(rows) == len(lines)
    assert [r["line"] for r in rows] == list(range(1, len(lines) + 1))
    for r in rows:
        assert set(r) == {"line", "fingerprint", "template"}
        FingerprintResult.model_validate(r)
    # templates are final over the whole file; lines of one event share a fingerprint
    received = [r for r, text in zip(rows, lines) if text.startswith("Received block")]
    assert len({r["fingerprint"] for r in received}) == 1
    assert received[0]["template"] == "Received block <*> of size <*> from <*>"
    responders = [r for r, text in zip(rows, lines) if text.startswith("PacketResponder")]
    assert len({r["fingerprint"] for r in responders}) == 1
    assert responders[0]["fingerprint"] != received[0]["fingerprint"]
    assert rows[lines.index("")]["template"] == ""


def test_cli_reads_stdin_and_prints_a_table() -> None:
    text = (DATA / "messages.txt").read_text()
    from_stdin = run_cli("fingerprint", "-", "--json", input=text)
    from_file = run_cli("fingerprint", str(DATA / "messages.txt"), "--json")
    assert from_stdin.returncode == 0 and from_stdin.stdout == from_file.stdout
    table = run_cli("fingerprint", "-", input=text)
    assert table.returncode == 0
    out = table.stdout.splitlines()
    assert out[0].split() == ["line", "fingerprint", "template"]
    assert len(out) == 1 + len(text.splitlines())
    assert "Received block <*> of size <*> from <*>" in out[1]


def test_cli_fingerprints_match_the_library() -> None:
    src = DATA / "messages.txt"
    rows = [json.loads(x) for x in run_cli("fingerprint", str(src), "--json").stdout.splitlines()]
    lib = Fingerprinter().fingerprint_many(src.read_text().splitlines())
    assert [(r["fingerprint"], r["template"]) for r in rows] == lib


@pytest.mark.parametrize("target, words", [("missing.txt", "no such file"), (".", "is a directory")])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path: Path, target: str, words: str) -> None:
    proc = run_cli("fingerprint", str(tmp_path / target), "--json")
    assert proc.returncode == 2
    assert proc.stdout == ""
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("selfheal: error:") and words in err[0]
    assert "Traceback" not in proc.stderr


def test_cli_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_text("")
    proc = run_cli("fingerprint", str(empty), "--json")
    assert proc.returncode == 0 and proc.stdout == ""


# --------------------------------------------------------------------------- Loghub scoring


def test_grouping_accuracy_definition() -> None:
    truth = ["A", "A", "B", "B", "C"]
    assert grouping_accuracy(truth, [1, 1, 2, 2, 3]) == 1.0
    assert grouping_accuracy(truth, [1, 1, 1, 1, 3]) == pytest.approx(1 / 5)  # A and B merged: only C right
    assert grouping_accuracy(truth, [1, 2, 3, 3, 4]) == pytest.approx(3 / 5)  # A split: B and C right
    with pytest.raises(ValueError):
        grouping_accuracy(truth, [1])


def test_evaluate_dir_on_a_tiny_dataset(tmp_path: Path) -> None:
    (tmp_path / "Tiny_2k.log_structured.csv").write_text((DATA / "Tiny_2k.log_structured.csv").read_text())
    result = evaluate_dir(tmp_path)
    assert result["datasets"]["Tiny"]["accuracy"] == 1.0
    assert result["datasets"]["Tiny"]["lines"] == 5
    assert result["mean_accuracy"] == 1.0


def test_evaluate_dir_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no \\*_2k.log_structured.csv"):
        evaluate_dir(tmp_path)
    with pytest.raises(InputError, match="not a directory"):
        evaluate_dir(tmp_path / "nope")
    (tmp_path / "Bad_2k.log_structured.csv").write_text("LineId,Content\n1,x\n")
    with pytest.raises(InputError, match="EventId"):
        read_dataset(tmp_path / "Bad_2k.log_structured.csv")


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"Loghub datasets not found at {LOGHUB}")
def test_loghub_accuracy_floor() -> None:
    result = evaluate_dir(LOGHUB)
    accuracies = {name: r["accuracy"] for name, r in result["datasets"].items()}
    assert len(accuracies) >= 8
    assert result["mean_accuracy"] >= 0.90, accuracies
    assert min(accuracies.values()) >= 0.70, accuracies
