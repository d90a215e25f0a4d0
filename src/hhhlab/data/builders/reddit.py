"""Reddit comparisons, from either of two formats (detected per row, so one file may mix them):

* **Pushshift comment dumps** (``RC_YYYY-MM.jsonl``, one comment per line: ``id, parent_id,
  link_id, author, body, score, created_utc, subreddit, ...``) — the paper's source. Optional
  Pushshift submission rows (``RS_`` format: ``id, title, selftext, author``, no ``link_id``)
  in the same file give the thread its ``SUBMISSION`` line.
* **SHP / SHP-2** rows (``post_id, domain, history, human_ref_A/B, score_A/B, ...``) — the
  nearest preprocessed public data (two top-level comments of one post).

The paper's rules (App. C.1, digest §5.1): two comment *sequences* of one thread that differ
only in the final comment; the one whose final comment has more upvotes is better; deleted and
bot comments removed; usernames replaced by aliases; a subreddit whitelist (AmItheAsshole left
out: it overlaps ETHICS commonsense). Format::

    SUBMISSION by username: ...
    COMMENT by username: ...
    COMMENT by username: ...

Pushshift, our rules where the paper is silent:
* one group per *parent* (a submission or a comment) with two or more replies: the context is
  the thread from the submission down to the parent, one ``COMMENT by alias: body`` line per
  comment, ending in ``\\nCOMMENT by``; each reply is one response ``" alias: body"``, scored by
  its ``score``. So every pair of the group is two sequences differing only in the final comment
  (`pairs(group, "sample", seed)` draws the paper's one pair; ``"all"`` gives every pair with
  different scores). Replies with equal scores are never paired (ties skipped); a parent whose
  replies all have one score is skipped ("no sibling with a different score");
* the dump has no submission text (comments only): unless a submission row is in the same file,
  the context starts at the top-level comment (no ``SUBMISSION`` line);
* deleted comments (body ``[deleted]``/``[removed]``) and bot comments (author AutoModerator or
  ending in "bot", or a body saying "I am a bot") are removed: not used as replies, and a reply
  whose thread above it contains one (or a comment not in the file) is skipped — removing a line
  from the middle of a conversation would make it incoherent. An author ``[deleted]`` with an
  intact body is kept (all such authors of one thread share one alias);
* aliases ``user_N``: one per author per thread (the same in every group of the thread and in
  both sequences of a pair), numbered by a hash of (seed, thread, author) rather than by order of
  appearance, so the number says nothing about when the author posted (earlier comments get more
  votes); the final comment's author alias is part of the response;
* bodies: ``\\r\\n`` -> ``\\n``, HTML entities decoded (Pushshift stores ``&gt;``), stripped;
* ``split_key`` = the thread (``link_id``): overlapping contexts of one thread stay in one split;
* subreddit rules as for SHP (AmItheAsshole always out, ``--paper-subreddits`` the whitelist).

Accounting: every comment row ends as a response of a written group, a reject, or a skip by
reason. Streaming: comments are staged in a temporary SQLite file (as the StackExchange builder
does) and grouped per thread in a second pass, so RAM holds one thread's author list and one
comment chain at a time whatever the dump's size or order; the disk holds the staged comments.
Threads are joined within one input file (concatenate monthly dumps to join across months).

SHP rules:
* context ``"SUBMISSION by user_1: {history}\\nCOMMENT by user_2:"`` and responses
  ``" " + comment`` (SHP carries no usernames; one alias for both alternatives);
* better = more upvotes (``score_A`` vs ``score_B``); ties skipped; SHP's ``labels`` (which also
  uses comment timing) is kept in the metadata; deleted, removed and "I am a bot" comments
  skipped; one group per SHP row (SHP is already a sample of pairs).
"""

from __future__ import annotations

import functools
import html
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hhhlab.data.build import BuildOptions, HubInput, Item, Reject, Skip, guard, iter_jsonl_objects
from hhhlab.data.schema import PreferenceGroup, stable_hash
from hhhlab.errors import DataError

PATTERNS = ("*.jsonl", "*.jsonl.gz", "*.json", "*.json.gz", "*.jsonl.bz2", "*.jsonl.xz")
HUB_INPUT = True  # --input hf:NAME[:CONFIG][@SPLIT] (see build.HubInput)

PAPER_SUBREDDITS = frozenset(s.lower() for s in (  # noqa: SIM905 (the paper's list, as printed)
    "tifu explainlikeimfive WritingPrompts changemyview LifeProTips todayilearned science askscience "
    "ifyoulikeblank UpliftingNews Foodforthought IWantToLearn bestof IAmA socialskills relationship_advice "
    "philosophy YouShouldKnow history books Showerthoughts personalfinance buildapc EatCheapAndHealthy "
    "boardgames malefashionadvice femalefashionadvice scifi Fantasy Games bodyweightfitness SkincareAddiction "
    "podcasts suggestmeabook AskHistorians gaming DIY mildlyinteresting sports space gadgets Documentaries "
    "GetMotivated technology Fitness travel lifehacks Damnthatsinteresting gardening programming").split())
EXCLUDED = frozenset({"amitheasshole"})
DELETED = frozenset({"[deleted]", "[removed]"})
BOT_AUTHORS = frozenset({"automoderator"})

SKIP_DELETED = "deleted comment"
SKIP_BOT = "bot comment"
SKIP_BROKEN = "reply below a deleted, bot or missing comment"
SKIP_ALONE = "no sibling with a different score"


def subreddit_of(domain: str) -> tuple[str, str | None]:
    """``"askculinary_train"`` -> ``("askculinary", "train")``."""
    name, sep, split = str(domain).rpartition("_")
    if sep and split in {"train", "validation", "test", "val", "dev"}:
        return name, split
    return str(domain), None


def _score(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"score must be a number, got {value!r}")
    return int(value)


def _str(obj: dict, key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise DataError(f"'{key}' must be a string, got {type(value).__name__}")
    return value


def subreddit_rule(subreddit: str, options: BuildOptions) -> Skip | None:
    """The paper's subreddit rules: AmItheAsshole always out; the whitelist if asked."""
    if subreddit.lower() in EXCLUDED:
        return Skip("subreddit excluded (overlaps ETHICS)")
    if options.reddit_paper_whitelist and subreddit.lower() not in PAPER_SUBREDDITS:
        return Skip("subreddit not in the paper's whitelist")
    return None


def is_bot(author: str, body: str) -> bool:
    """AutoModerator, an author name ending in "bot", or a body that says it is a bot."""
    name = author.lower()
    return name in BOT_AUTHORS or name.endswith("bot") or "i am a bot" in body.lower()


def clean_body(body: str) -> str:
    return html.unescape(body.replace("\r\n", "\n").replace("\r", "\n")).strip()


# --------------------------------------------------------------------------------------------
# format detection

def row_format(obj: dict) -> str:
    """``"pushshift"`` (a comment), ``"submission"`` (a Pushshift submission) or ``"shp"``."""
    if "link_id" in obj or "parent_id" in obj:
        return "pushshift"
    if "title" in obj and ("selftext" in obj or "url" in obj) and "id" in obj:
        return "submission"
    return "shp"


def build_file(path: Path, options: BuildOptions) -> Iterator[Item]:
    with tempfile.TemporaryDirectory(prefix="hhhlab-reddit-") as tmp:
        db = sqlite3.connect(Path(tmp) / "comments.sqlite")
        db.executescript(_SCHEMA)
        for entry in iter_jsonl_objects(path):
            if isinstance(entry, Reject):
                yield entry
                continue
            where, obj = entry
            if not isinstance(obj, dict):
                yield Reject(where, f"expected a JSON object, got {type(obj).__name__}", str(obj)[:2000])
                continue
            fmt = row_format(obj)
            if fmt == "shp":
                yield from guard(where, obj, functools.partial(_shp, obj, options))
            else:
                stage = _stage_comment if fmt == "pushshift" else _stage_submission
                yield from guard(where, obj, functools.partial(stage, db, obj, where, options))
        if db.execute("SELECT 1 FROM c LIMIT 1").fetchone():
            db.commit()
            yield from _groups(db, path, options)
        db.close()


# --------------------------------------------------------------------------------------------
# Pushshift

_SCHEMA = """
CREATE TABLE c (name TEXT PRIMARY KEY, link TEXT, parent TEXT, author TEXT, body TEXT, score INTEGER,
                created INTEGER, subreddit TEXT, line TEXT, status TEXT);
CREATE INDEX c_parent ON c (link, parent);
CREATE TABLE s (name TEXT PRIMARY KEY, author TEXT, title TEXT, body TEXT);
"""


def _fullname(value: str, prefix: str) -> str:
    """``"c13"`` -> ``"t1_c13"``; already-prefixed names unchanged."""
    return value if value[:3] in {"t1_", "t3_"} else prefix + value


def _stage_comment(db: sqlite3.Connection, obj: dict, where: str, options: BuildOptions) -> Item | None:
    name = _fullname(_str(obj, "id"), "t1_")
    link, parent = _fullname(_str(obj, "link_id"), "t3_"), _str(obj, "parent_id")
    author, body = _str(obj, "author"), _str(obj, "body")
    created = obj.get("created_utc", 0)  # some dumps store it as a string
    score, created = _score(obj["score"]), int(created) if isinstance(created, str) else _score(created)
    subreddit = _str(obj, "subreddit") if "subreddit" in obj else ""
    status = None
    skip = subreddit_rule(subreddit, options)
    if skip is not None:
        status = skip.reason
    elif body.strip() in DELETED:
        status = SKIP_DELETED
    elif is_bot(author, body):
        status = SKIP_BOT
    try:
        db.execute("INSERT INTO c VALUES (?,?,?,?,?,?,?,?,?,?)",
                   (name, link, parent, author, clean_body(body), score, created, subreddit, where, status))
    except sqlite3.IntegrityError:
        raise DataError(f"duplicate comment id {name}") from None
    return Skip(status) if status else None


def _stage_submission(db: sqlite3.Connection, obj: dict, where: str, options: BuildOptions) -> Item | None:
    name = _fullname(_str(obj, "id"), "t3_")
    title, body = _str(obj, "title"), obj.get("selftext") or ""
    if not isinstance(body, str):
        raise DataError("'selftext' must be a string")
    db.execute("INSERT OR REPLACE INTO s VALUES (?,?,?,?)", (name, _str(obj, "author"), clean_body(title),
                                                             clean_body(body)))
    return Skip("submission row (used as thread context)")


def thread_aliases(authors: list[str], link: str, seed: int) -> dict[str, str]:
    """``user_1..user_K`` for a thread's K authors, ordered by a hash of (seed, thread, author)."""
    ranked = sorted(set(authors), key=lambda a: stable_hash(seed, link, a))
    return {a: f"user_{i}" for i, a in enumerate(ranked, 1)}


def _groups(db: sqlite3.Connection, path: Path | HubInput, options: BuildOptions) -> Iterator[Item]:
    links = [row[0] for row in db.execute("SELECT DISTINCT link FROM c WHERE status IS NULL ORDER BY link")]
    for link in links:
        authors = [r[0] for r in db.execute("SELECT author FROM c WHERE link = ?", (link,))]
        sub = db.execute("SELECT author, title, body FROM s WHERE name = ?", (link,)).fetchone()
        aliases = thread_aliases(authors + ([sub[0]] if sub else []), link, options.seed)
        rows = db.execute("SELECT parent, name, author, body, score, line, subreddit FROM c "
                          "WHERE link = ? AND status IS NULL ORDER BY parent, created, name", (link,)).fetchall()
        start = 0
        while start < len(rows):
            end = start
            while end < len(rows) and rows[end][0] == rows[start][0]:
                end += 1
            yield from _parent_group(db, path, link, rows[start:end], aliases, sub)
            start = end


def _chain(db: sqlite3.Connection, link: str, parent: str) -> list[tuple[str, str, str]] | None:
    """``[(name, author, body), ...]`` from the top-level comment down to ``parent``; None if a
    comment on the way is deleted, a bot's, or not in the file."""
    chain = []
    seen = set()
    while parent != link and parent not in seen:
        seen.add(parent)
        row = db.execute("SELECT name, author, body, parent, status FROM c WHERE name = ?", (parent,)).fetchone()
        if row is None or row[4] is not None:
            return None
        chain.append(row[:3])
        parent = row[3]
    if parent != link:  # a cycle of parent ids
        return None
    return chain[::-1]


def _parent_group(db: sqlite3.Connection, path: Path | HubInput, link: str, replies: list[tuple],
                  aliases: dict[str, str], sub: tuple | None) -> Iterator[Item]:
    parent = replies[0][0]
    chain = _chain(db, link, parent)
    if chain is None:
        for _ in replies:
            yield Skip(SKIP_BROKEN)
        return
    if len(replies) < 2 or len({r[4] for r in replies}) < 2:
        for _ in replies:
            yield Skip(SKIP_ALONE)
        return
    lines = [f"SUBMISSION by {aliases[sub[0]]}: {sub[1]}" + (f"\n{sub[2]}" if sub[2] else "")] if sub else []
    lines += [f"COMMENT by {aliases[author]}: {body}" for _, author, body in chain]
    context = "\n".join([*lines, "COMMENT by"])
    where = replies[0][5]

    def convert():
        return PreferenceGroup(
            id=f"reddit:{link}:{parent}", context=context,
            responses=[f" {aliases[r[2]]}: {r[3]}" for r in replies], scores=[float(r[4]) for r in replies],
            kind="ranked", source="reddit",
            metadata={"format": "pushshift", "link_id": link, "parent_id": parent, "subreddit": replies[0][6],
                      "comment_ids": [r[1] for r in replies], "depth": len(chain), "split_key": link})

    yield from guard(where, {"link_id": link, "parent_id": parent}, convert)


# --------------------------------------------------------------------------------------------
# SHP

def _shp(obj: dict, options: BuildOptions) -> Item:
    subreddit, split = subreddit_of(obj["domain"])
    skip = subreddit_rule(subreddit, options)
    if skip is not None:
        return skip
    history = obj["history"]
    comments = [obj["human_ref_A"], obj["human_ref_B"]]
    if not isinstance(history, str) or not all(isinstance(c, str) for c in comments):
        raise DataError("'history', 'human_ref_A' and 'human_ref_B' must be strings")
    if not history.strip():
        raise DataError("empty submission text")
    if any(c.strip() in DELETED for c in comments):
        return Skip(SKIP_DELETED)
    if any("i am a bot" in c.lower() for c in comments):
        return Skip(SKIP_BOT)
    scores = [float(_score(obj["score_A"])), float(_score(obj["score_B"]))]
    if scores[0] == scores[1]:
        return Skip("tie")
    responses = [" " + c.strip() for c in comments]
    if responses[0] == responses[1]:
        return Skip("identical responses")
    return PreferenceGroup(
        id=f"reddit:{obj.get('post_id', '')}:{obj.get('c_root_id_A', '')}:{obj.get('c_root_id_B', '')}",
        context=f"SUBMISSION by user_1: {history.strip()}\nCOMMENT by user_2:",
        responses=responses, scores=scores, kind="ranked", source="reddit",
        metadata={"post_id": obj.get("post_id"), "subreddit": subreddit, "split": split,
                  "comment_ids": [obj.get("c_root_id_A"), obj.get("c_root_id_B")],
                  "shp_label": obj.get("labels")})
