"""Each loader on a small file written here, and on a malformed one: the error names the
file and the line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quarry.evals.datasets import load_dataset
from quarry.evals.datasets.needle import haystack
from quarry.evals.errors import DatasetError


def _jsonl(path: Path, records: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


# jsonl (Quarry's own format) -----------------------------------------------------------------
def test_jsonl_questions_with_a_corpus_beside_them(tmp_path: Path) -> None:
    _jsonl(
        tmp_path / "corpus.jsonl",
        [
            {"id": "tea", "title": "Tea", "text": "Green tea is made from unoxidised leaves."},
            {"id": "whale", "text": "Blue whales are the largest animals."},
        ],
    )
    qa = _jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": 1, "question": "What is green tea made from?", "answer": "unoxidised leaves", "gold": ["Tea"]},
            "",
            {
                "question": " Which animal is largest? ",
                "answers": ["blue whale", "the blue whale"],
                "gold_ids": "whale",
                "gold_facts": ["Blue whales are the largest animals."],
                "group": "animals",
            },
            {"question": "Which colour is the tea?", "choices": ["red", "green"], "answers": ["green"]},
        ],
    )
    ds = load_dataset("jsonl", qa)
    assert [d.id for d in ds.corpus] == ["tea", "whale"]
    assert ds.corpus[1].title == "whale"  # no title: the id
    first, second, third = ds.items
    assert (first.id, first.answers, first.gold) == ("1", ["unoxidised leaves"], ["Tea"])
    assert second.id == "line-3" and second.question == "Which animal is largest?"
    assert second.gold == ["whale"] and second.group == "animals" and second.gold_facts
    assert third.choices == ["red", "green"] and third.answers == ["B"]  # option text → letter
    assert load_dataset("jsonl", tmp_path).items == ds.items  # the folder works too


def test_jsonl_without_a_corpus_runs_against_a_collection(tmp_path: Path) -> None:
    qa = _jsonl(tmp_path / "questions.jsonl", [{"question": "Anything?"}])
    ds = load_dataset("jsonl", qa)
    assert ds.corpus == [] and ds.items[0].answers == [] and ds.notes


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "ok"}', '{"question": "broken"'], "qa.jsonl line 2: malformed JSON"),
        (['{"question": "ok"}', "", '{"answers": ["x"]}'], "qa.jsonl line 3: missing field 'question'"),
        (['{"question": "ok", "answers": 5}'], "qa.jsonl line 1: field 'answers' must be a string or a list"),
        (['["a list"]'], "qa.jsonl line 1: expected a JSON object"),
        (['{"id": "a", "question": "x"}', '{"id": "a", "question": "y"}'], "line 2: duplicate question id 'a'"),
        (['{"question": "x", "choices": ["p", "q"], "answers": ["C"]}'], "line 1: answer 'C' names none"),
    ],
)
def test_jsonl_malformed_lines(tmp_path: Path, lines: list[str], message: str) -> None:
    qa = _jsonl(tmp_path / "qa.jsonl", lines)
    with pytest.raises(DatasetError, match=message):
        load_dataset("jsonl", qa, corpus=_jsonl(tmp_path / "c.jsonl", [{"id": "x", "text": "t"}]))


def test_corpus_errors_name_the_line(tmp_path: Path) -> None:
    qa = _jsonl(tmp_path / "qa.jsonl", [{"question": "x"}])
    corpus = _jsonl(tmp_path / "c.jsonl", [{"id": "a", "text": "fine"}, {"id": "b", "text": "   "}])
    with pytest.raises(DatasetError, match=r"c\.jsonl line 2: field 'text' must be a non-empty string"):
        load_dataset("jsonl", qa, corpus=corpus)
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset("jsonl", tmp_path / "missing.jsonl")


# HotpotQA --------------------------------------------------------------------------------------
HOTPOT = [
    {
        "_id": "h1",
        "question": "Which band, formed in Leeds, recorded Fortune?",
        "answer": "The Ponies",
        "type": "bridge",
        "level": "easy",
        "supporting_facts": [["Fortune (song)", 0], ["The Ponies", 1]],
        "context": [
            ["Fortune (song)", ["Fortune is a song by The Ponies.", " It was a hit."]],
            ["The Ponies", ["The Ponies are a band.", " They formed in Leeds."]],
            ["Leeds", ["Leeds is a city."]],
        ],
    },
    {
        "_id": "h2",
        "question": "Is Leeds a city?",
        "answer": "yes",
        "type": "comparison",
        "supporting_facts": [["Leeds", 0]],
        "context": [["Leeds", ["Leeds is a city."]]],
    },
]


def test_hotpotqa_distractor_layout(tmp_path: Path) -> None:
    (tmp_path / "train.json").write_text(json.dumps(HOTPOT, indent=1))
    ds = load_dataset("hotpotqa", tmp_path)
    assert sorted(d.id for d in ds.corpus) == ["Fortune (song)", "Leeds", "The Ponies"]  # from the contexts
    assert next(d for d in ds.corpus if d.id == "The Ponies").text == "The Ponies are a band. They formed in Leeds."
    h1 = ds.items[0]
    assert h1.gold == ["Fortune (song)", "The Ponies"] and h1.answers == ["The Ponies"] and h1.group == "bridge"
    assert h1.gold_facts == ["Fortune is a song by The Ponies.", "They formed in Leeds."]
    assert ds.notes  # says the corpus came from the contexts

    (tmp_path / "train_corpus.json").write_text(json.dumps({"Leeds": ["Leeds is a city."], "York": ["York too."]}))
    ds = load_dataset("hotpotqa", tmp_path)
    assert [d.id for d in ds.corpus] == ["Leeds", "York"]  # the corpus file wins
    assert any("not in the corpus" in n for n in ds.notes)


def test_hotpotqa_malformed_record_names_its_line(tmp_path: Path) -> None:
    bad = [HOTPOT[0], {**HOTPOT[1], "supporting_facts": [["Leeds", "zero"]]}]
    text = json.dumps(bad, indent=1)
    (tmp_path / "train.json").write_text(text)
    line = text[: text.index('"_id": "h2"')].count("\n")  # the line the second record's `{` is on
    with pytest.raises(DatasetError, match=rf"train\.json line {line}: supporting fact \['Leeds', 'zero'\]"):
        load_dataset("hotpotqa", tmp_path / "train.json")
    (tmp_path / "train.json").write_text('[{"_id": "h1",\n "question": }]')
    with pytest.raises(DatasetError, match=r"train\.json line 2 column 14: malformed JSON"):
        load_dataset("hotpotqa", tmp_path / "train.json")


# MuSiQue ---------------------------------------------------------------------------------------
def test_musique(tmp_path: Path) -> None:
    paragraphs = [
        {"idx": 0, "title": "Ponies", "paragraph_text": "The Ponies formed in Leeds.", "is_supporting": True},
        {"idx": 1, "title": "Leeds", "paragraph_text": "Leeds is in Yorkshire.", "is_supporting": True},
        {"idx": 2, "title": "York", "paragraph_text": "York is old.", "is_supporting": False},
    ]
    path = _jsonl(
        tmp_path / "musique.jsonl",
        [
            {
                "id": "2hop__1_2",
                "question": "Where is the city the Ponies formed in?",
                "answer": "Yorkshire",
                "answer_aliases": ["Yorks"],
                "paragraphs": paragraphs,
                "answerable": True,
            },
            {
                "id": "2hop__3_4",
                "question": "Unanswerable?",
                "answer": "",
                "paragraphs": paragraphs,
                "answerable": False,
            },
            {
                "id": "2hop__5_6",
                "question": "Which Leeds?",
                "answer": "Leeds",
                "paragraphs": [
                    {"idx": 0, "title": "Leeds", "paragraph_text": "Leeds, Alabama.", "is_supporting": True}
                ],
            },
        ],
    )
    ds = load_dataset("musique", path)
    assert [d.id for d in ds.corpus] == ["Ponies", "Leeds", "York", "Leeds (2)"]  # same title, other text
    first, second = ds.items
    assert first.answers == ["Yorkshire", "Yorks"] and first.gold == ["Ponies", "Leeds"] and first.group == "2hop"
    assert second.gold == ["Leeds (2)"]
    assert ds.notes == ["skipped 1 unanswerable question(s)"]

    _jsonl(
        path,
        [
            {"id": "x", "question": "q", "answer": "a", "paragraphs": paragraphs},
            {"id": "y", "question": "q", "answer": "a", "paragraphs": [{"title": "no text"}]},
        ],
    )
    with pytest.raises(DatasetError, match=r"musique\.jsonl line 2: paragraph 0 must be an object"):
        load_dataset("musique", path)


# SQuAD -----------------------------------------------------------------------------------------
def _squad_official(tmp_path: Path, question: object = "Who won?") -> Path:
    data = {
        "version": "1.1",
        "data": [
            {
                "title": "Super_Bowl_50",
                "paragraphs": [
                    {
                        "context": "The Denver Broncos won Super Bowl 50.",
                        "qas": [
                            {
                                "id": "s1",
                                "question": question,
                                "answers": [
                                    {"text": "Denver Broncos", "answer_start": 4},
                                    {"text": "Denver Broncos", "answer_start": 4},
                                    {"text": "The Denver Broncos", "answer_start": 0},
                                ],
                            }
                        ],
                    },
                    {
                        "context": "It was played in Santa Clara.",
                        "qas": [
                            {"id": "s2", "question": "Where?", "answers": [{"text": "Santa Clara"}]},
                            {"id": "s3", "question": "When?", "answers": [], "is_impossible": True},
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(data, indent=1))
    return path


def test_squad_official_json(tmp_path: Path) -> None:
    ds = load_dataset("squad", _squad_official(tmp_path))
    assert [d.id for d in ds.corpus] == ["Super_Bowl_50#0", "Super_Bowl_50#1"]
    assert [(i.id, i.gold) for i in ds.items] == [("s1", ["Super_Bowl_50#0"]), ("s2", ["Super_Bowl_50#1"])]
    assert ds.items[0].answers == ["Denver Broncos", "The Denver Broncos"]
    assert ds.notes == ["skipped 1 unanswerable question(s)"]


def test_squad_malformed_question_names_its_line(tmp_path: Path) -> None:
    path = _squad_official(tmp_path, question=17)
    text = path.read_text()
    line = text[: text.index('"id": "s1"')].count("\n")
    with pytest.raises(DatasetError, match=rf"dev\.json line {line}: field 'question' must be a non-empty string"):
        load_dataset("squad", path)


def test_squad_passages_and_qa_layout(tmp_path: Path) -> None:
    _jsonl(
        tmp_path / "passages.jsonl",
        [{"id": "A#0", "title": "A", "text": "Alpha text."}, {"id": "A#1", "title": "A", "text": "More alpha."}],
    )
    _jsonl(tmp_path / "qa.jsonl", [{"id": "q1", "question": "What?", "answers": ["Alpha"], "gold_passage_id": "A#1"}])
    ds = load_dataset("squad", tmp_path)
    assert ds.name == "squad" and len(ds.corpus) == 2 and ds.items[0].gold == ["A#1"]
    _jsonl(tmp_path / "qa.jsonl", [{"id": "q1", "question": "What?", "answers": ["Alpha"], "gold_passage_id": 3}])
    with pytest.raises(DatasetError, match=r"qa\.jsonl line 1: field 'gold_passage_id'"):
        load_dataset("squad", tmp_path)


# L-Eval ----------------------------------------------------------------------------------------
def test_leval_long_documents(tmp_path: Path) -> None:
    path = _jsonl(
        tmp_path / "quality.jsonl",
        [
            {
                "input": "A long story about a ship called Argo.",
                "source": "quality",
                "evaluation": "exam",
                "instructions": ["What is the ship called?\nA. Argo\nB. Titanic\nC. Nautilus", "Bad options?"],
                "outputs": ["(A)", "B"],
            },
            {
                "input": "Minutes of a meeting.",
                "instructions": ["Summarise the meeting."],
                "outputs": ["They met."],
                "evaluation": "rouge",
            },
        ],
    )
    ds = load_dataset("leval", path)
    assert [d.id for d in ds.corpus] == ["quality:1", "quality:2"]
    mc, free_exam, free = ds.items
    assert mc.choices == ["Argo", "Titanic", "Nautilus"] and mc.answers == ["A"] and mc.scope == "quality:1"
    assert free_exam.choices == [] and free_exam.answers == ["B"]  # no options: scored as text, with a note
    assert free.scope == "quality:2" and free.gold == ["quality:2"] and free.answers == ["They met."]
    assert any("question 1" in n for n in ds.notes)

    _jsonl(
        path,
        [
            {"input": "x", "instructions": ["a"], "outputs": ["b"]},
            {"input": "y", "instructions": ["a", "b"], "outputs": ["c"]},
        ],
    )
    with pytest.raises(DatasetError, match=r"quality\.jsonl line 2: 2 instructions but 1 outputs"):
        load_dataset("leval", path)


# needle in a haystack --------------------------------------------------------------------------
def _needle_dir(tmp_path: Path) -> Path:
    essays = tmp_path / "needle" / "essays"
    essays.mkdir(parents=True)
    words = " ".join(f"word{i}." if i % 10 == 9 else f"word{i}" for i in range(300))
    (essays / "a.txt").write_text(words)
    (essays / "b.txt").write_text("Second essay. " * 50)
    needle = {
        "single_needle": {"needle": "\nThe secret is a green door.\n", "retrieval_question": "What is the secret?"}
    }
    (tmp_path / "needle" / "needles.json").write_text(json.dumps(needle))
    return tmp_path / "needle"


def test_needle_grid(tmp_path: Path) -> None:
    ds = load_dataset("needle", _needle_dir(tmp_path), needle_lengths=[100, 400], needle_depths=[0, 50, 100])
    assert len(ds.corpus) == 6 and len(ds.items) == 6
    by_id = {d.id: d for d in ds.corpus}
    needle = "The secret is a green door."
    start, middle, end = (by_id[f"haystack-100w-{d}pct"].text for d in (0, 50, 100))
    assert start.startswith(needle) and end.endswith(needle) and needle in middle
    assert 0.3 < middle.index(needle) / len(middle) < 0.6
    assert len(middle.split()) == 100
    assert len(by_id["haystack-400w-50pct"].text.split()) == 400  # the essays, then the next one
    item = ds.items[1]
    assert item.scope == "haystack-100w-50pct" and item.answers == [needle] and item.gold_facts == [needle]
    assert item.metadata == {"length": 100, "depth": 50} and item.group == "100 words"


def test_needle_inserted_after_a_sentence() -> None:
    text = haystack("One two three. Four five six. Seven eight nine.", "NEEDLE.", 10, 50)
    assert "three. NEEDLE. Four" in text or "six. NEEDLE. Seven" in text


def test_needle_malformed(tmp_path: Path) -> None:
    root = _needle_dir(tmp_path)
    (root / "needles.json").write_text('{\n "single_needle": {"retrieval_question": "q"}\n}')
    with pytest.raises(DatasetError, match=r"needles\.json line 1: expected"):
        load_dataset("needle", root)
    (root / "needles.json").write_text('{\n "single_needle": \n}')
    with pytest.raises(DatasetError, match=r"needles\.json line 3 column 1: malformed JSON"):
        load_dataset("needle", root)


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset format"):
        load_dataset("trec", tmp_path)


def test_2wiki_shares_hotpotqas_layout_with_a_list_corpus(tmp_path: Path) -> None:
    questions = [
        {
            "_id": "w1",
            "type": "compositional",
            "question": "Who is the father of the director of Film A?",
            "answer": "Bob",
            "context": [["Film A", ["Film A is directed by Ann."]], ["Ann", ["Ann is the daughter of Bob."]]],
            "supporting_facts": [["Film A", 0], ["Ann", 0]],
        }
    ]
    (tmp_path / "2wiki_dev.json").write_text(json.dumps(questions))
    corpus = [
        {"title": "Film A", "text": "Film A is directed by Ann."},
        {"title": "Ann", "text": "Ann is the daughter of Bob."},
    ]
    (tmp_path / "2wiki_dev_corpus.json").write_text(json.dumps(corpus))
    ds = load_dataset("2wiki", tmp_path)
    assert ds.name == "2wiki" and [d.title for d in ds.corpus] == ["Film A", "Ann"]
    assert ds.items[0].gold == ["Film A", "Ann"] and ds.items[0].gold_facts == [
        "Film A is directed by Ann.",
        "Ann is the daughter of Bob.",
    ]
    (tmp_path / "2wiki_dev_corpus.json").write_text(json.dumps([{"title": 3}]))
    with pytest.raises(DatasetError, match="record 0"):
        load_dataset("2wiki", tmp_path)
