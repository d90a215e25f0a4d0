"""Storage of raters, conversations and comparisons (SQLAlchemy; SQLite by default).

Why these tables: a shown-but-unrated pair lives in ``pending`` (one per conversation), and a
rating turns it into one ``comparisons`` row, deletes the pending row and extends the
conversation **in one transaction**, committed before the server answers. So:

* a comparison row is complete or absent — every column but ``comment`` is NOT NULL and the
  rating has a CHECK constraint, so no half-written row can exist even after a SIGKILL;
* an acknowledged rating (the server answered 303) is on disk: SQLite runs with
  ``synchronous=FULL`` (WAL journal), so a commit survives the process being killed;
* a replayed rating form finds its pending row gone and is refused (409), never stored twice.

The rating scale is the paper's 8 points: 1 = A much better ... 4 = A slightly better,
5 = B slightly better ... 8 = B much better (no tie). ``chosen`` is the side the rating favours and
``strength`` its degree, 1 (slightly) to 4 (much).

Any SQLAlchemy URL works (``postgresql+psycopg://...`` for a multi-rater deployment); a plain
path is taken as a SQLite file. A URL that cannot be opened is a `FeedbackStoreError` naming it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from hhhlab.errors import HHHLabError

RATING_MIN, RATING_MAX = 1, 8
SCALE_LABELS = {1: "A is much better", 2: "A is better", 3: "A is somewhat better", 4: "A is slightly better",
                5: "B is slightly better", 6: "B is somewhat better", 7: "B is better", 8: "B is much better"}


class FeedbackStoreError(HHHLabError):
    """The comparisons database cannot be opened, read or written; names the URL."""


def chosen_side(rating: int) -> str:
    """``"A"`` for ratings 1-4, ``"B"`` for 5-8."""
    check_rating(rating)
    return "A" if rating <= 4 else "B"


def strength(rating: int) -> int:
    """How strongly the rating prefers its side: 1 (slightly, 4/5) to 4 (much, 1/8)."""
    check_rating(rating)
    return 5 - rating if rating <= 4 else rating - 4


def check_rating(rating: Any) -> int:
    if isinstance(rating, bool) or not isinstance(rating, int) or not RATING_MIN <= rating <= RATING_MAX:
        raise ValueError(f"rating must be an integer from {RATING_MIN} (A much better) to {RATING_MAX} "
                         f"(B much better), got {rating!r}")
    return rating


def utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Base(DeclarativeBase):
    pass


class Rater(Base):
    __tablename__ = "raters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the token; never the token
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class SystemRow(Base):
    """A model under a condition, as served (so ``elo`` can group and plot without the models)."""

    __tablename__ = "systems"
    name: Mapped[str] = mapped_column(String(500), primary_key=True)
    model: Mapped[str] = mapped_column(String(500))
    condition: Mapped[str] = mapped_column(String(50))
    non_embedding_params: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    prompt_version: Mapped[str | None] = mapped_column(String(100), nullable=True)
    info: Mapped[dict] = mapped_column(JSON, default=dict)


class Setting(Base):
    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Conversation(Base):
    __tablename__ = "conversations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=utcnow)
    turns: Mapped[list] = mapped_column(JSON, default=list)  # [{"role": "Human"|"Assistant", "text": ...}]


class Pending(Base):
    """A pair shown to a rater and not yet rated (at most one per conversation)."""

    __tablename__ = "pending"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=lambda: uuid.uuid4().hex)
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), unique=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    turn_index: Mapped[int] = mapped_column(Integer)
    user_message: Mapped[str] = mapped_column(Text)
    system_a: Mapped[str] = mapped_column(String(500))
    system_b: Mapped[str] = mapped_column(String(500))
    response_a: Mapped[str] = mapped_column(Text)
    response_b: Mapped[str] = mapped_column(Text)
    swapped: Mapped[bool] = mapped_column(Boolean)
    sampling: Mapped[dict] = mapped_column(JSON)
    latency_a_s: Mapped[float] = mapped_column(Float)
    latency_b_s: Mapped[float] = mapped_column(Float)
    queue_s: Mapped[float] = mapped_column(Float)
    requested_at: Mapped[_dt.datetime] = mapped_column(DateTime)
    shown_at: Mapped[_dt.datetime] = mapped_column(DateTime, default=utcnow)


class Comparison(Base):
    """One rated A/B comparison; complete or absent (see the module docstring)."""

    __tablename__ = "comparisons"
    __table_args__ = (CheckConstraint(f"rating >= {RATING_MIN} AND rating <= {RATING_MAX}", name="rating_scale"),
                      CheckConstraint("chosen IN ('A', 'B')", name="chosen_side"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(32), unique=True)  # the pending pair it rates
    conversation_id: Mapped[str] = mapped_column(ForeignKey("conversations.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("raters.id"), index=True)
    rater: Mapped[str] = mapped_column(String(100))
    turn_index: Mapped[int] = mapped_column(Integer)
    context: Mapped[list] = mapped_column(JSON)  # the conversation before user_message (turns)
    user_message: Mapped[str] = mapped_column(Text)
    system_a: Mapped[str] = mapped_column(String(500))
    model_a: Mapped[str] = mapped_column(String(500))
    condition_a: Mapped[str] = mapped_column(String(50))
    system_b: Mapped[str] = mapped_column(String(500))
    model_b: Mapped[str] = mapped_column(String(500))
    condition_b: Mapped[str] = mapped_column(String(50))
    response_a: Mapped[str] = mapped_column(Text)
    response_b: Mapped[str] = mapped_column(Text)
    swapped: Mapped[bool] = mapped_column(Boolean)  # True: the scheduled pair's second system is on side A
    sampling: Mapped[dict] = mapped_column(JSON)
    rating: Mapped[int] = mapped_column(Integer)
    chosen: Mapped[str] = mapped_column(String(1))
    comment: Mapped[str] = mapped_column(Text, default="")
    requested_at: Mapped[_dt.datetime] = mapped_column(DateTime)
    shown_at: Mapped[_dt.datetime] = mapped_column(DateTime)
    rated_at: Mapped[_dt.datetime] = mapped_column(DateTime)
    rating_seconds: Mapped[float] = mapped_column(Float)
    latency_a_s: Mapped[float] = mapped_column(Float)
    latency_b_s: Mapped[float] = mapped_column(Float)
    queue_s: Mapped[float] = mapped_column(Float)

    def to_record(self) -> dict[str, Any]:
        """The JSON form (``/admin/export``, ``elo``, the data builder)."""
        out = {c.name: getattr(self, c.name) for c in self.__table__.columns}
        for k, v in out.items():
            if isinstance(v, _dt.datetime):
                out[k] = v.isoformat() + "Z"
        out["model_a"], out["model_b"] = self.model_a, self.model_b
        return out


def normalize_url(url: str | Path) -> str:
    """A SQLAlchemy URL; a bare path is a SQLite file."""
    text = str(url)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    return text


class FeedbackStore:
    """The comparisons database at ``url``; every method is one short transaction."""

    def __init__(self, url: str | Path, *, create: bool = True):
        self.url = normalize_url(url)
        try:
            self.engine: SqlEngine = create_engine(self.url, future=True)
        except (ArgumentError, SQLAlchemyError, ImportError, ValueError) as exc:
            raise FeedbackStoreError(f"cannot open the feedback database {self.url!r}: {exc}") from None
        if self.url.startswith("sqlite"):
            path = self.url.split("///", 1)[-1]
            if path and path != ":memory:" and not create and not Path(path).exists():
                raise FeedbackStoreError(f"feedback database {path} does not exist")
            if path and path != ":memory:" and create:
                try:
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise FeedbackStoreError(f"cannot create the folder of {path}: {exc.strerror}") from None
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        try:
            if create:
                Base.metadata.create_all(self.engine)
            else:
                with self.engine.connect() as con:
                    con.exec_driver_sql("SELECT count(*) FROM comparisons")
        except (SQLAlchemyError, OSError) as exc:
            raise FeedbackStoreError(f"cannot open the feedback database {self.url!r}: "
                                     f"{getattr(exc, 'orig', None) or exc}") from None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed on success, rolled back on any error."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except SQLAlchemyError as exc:
            s.rollback()
            raise FeedbackStoreError(f"feedback database {self.url}: {getattr(exc, 'orig', None) or exc}") from exc
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    # -- raters ---------------------------------------------------------------------------------
    def add_rater(self, name: str, *, admin: bool = False, days: float | None = None) -> str:
        """Create (or re-key) a rater and return its new access token (shown once, stored hashed)."""
        name = name.strip()
        if not name or len(name) > 100:
            raise FeedbackStoreError(f"a rater name must have 1-100 characters, got {name!r}")
        token = secrets.token_urlsafe(24)
        expires = utcnow() + _dt.timedelta(days=days) if days else None
        with self.session() as s:
            rater = s.scalar(select(Rater).where(Rater.name == name))
            if rater is None:
                s.add(Rater(name=name, token_hash=hash_token(token), is_admin=admin, expires_at=expires))
            else:
                rater.token_hash, rater.is_admin, rater.expires_at, rater.revoked = (
                    hash_token(token), admin or rater.is_admin, expires, False)
        return token

    def rater_for_token(self, token: str | None) -> tuple[Rater | None, str]:
        """``(rater, "")`` for a valid token, else ``(None, why)`` (unknown, expired, revoked)."""
        if not token:
            return None, "no access token"
        with self.session() as s:
            rater = s.scalar(select(Rater).where(Rater.token_hash == hash_token(token)))
        if rater is None:
            return None, "unknown access token"
        if rater.revoked:
            return None, "this access token was revoked"
        if rater.expires_at is not None and rater.expires_at < utcnow():
            return None, f"this access token expired on {rater.expires_at:%Y-%m-%d %H:%M} UTC"
        return rater, ""

    def secret(self) -> bytes:
        """The server's signing key for CSRF tokens; made once and kept, so restarts keep forms valid."""
        with self.session() as s:
            row = s.get(Setting, "secret")
            if row is None:
                row = Setting(key="secret", value=secrets.token_hex(32))
                s.add(row)
            return bytes.fromhex(row.value)

    # -- systems --------------------------------------------------------------------------------
    def register_systems(self, systems: list[dict[str, Any]]) -> None:
        with self.session() as s:
            for info in systems:
                s.merge(SystemRow(**info))

    def systems(self) -> dict[str, SystemRow]:
        with self.session() as s:
            return {r.name: r for r in s.scalars(select(SystemRow))}

    # -- conversations --------------------------------------------------------------------------
    def new_conversation(self, rater_id: int) -> Conversation:
        with self.session() as s:
            conv = Conversation(rater_id=rater_id, turns=[])
            s.add(conv)
        return conv

    def conversations(self, rater_id: int) -> list[Conversation]:
        with self.session() as s:
            return list(s.scalars(select(Conversation).where(Conversation.rater_id == rater_id)
                                  .order_by(Conversation.updated_at.desc())))

    def conversation(self, conv_id: str, rater_id: int) -> tuple[Conversation | None, Pending | None]:
        """The rater's own conversation and its pending pair; ``None`` for another rater's."""
        with self.session() as s:
            conv = s.get(Conversation, conv_id)
            if conv is None or conv.rater_id != rater_id:
                return None, None
            pending = s.scalar(select(Pending).where(Pending.conversation_id == conv_id))
            return conv, pending

    def add_pending(self, **fields: Any) -> Pending:
        with self.session() as s:
            p = Pending(**fields)
            s.add(p)
        return p

    def rate(self, pending_id: str, rater: Rater, rating: int, comment: str, *,
             delay_s: float = 0.0) -> Comparison:
        """Store the rating of a pending pair as one comparison, in one transaction.

        Raises `LookupError` if the pair is not the rater's or was already rated (a replay).
        ``delay_s`` pauses between the writes and the commit (fault tests only)."""
        check_rating(rating)
        systems = self.systems()
        now = utcnow()
        with self.session() as s:
            p = s.get(Pending, pending_id)
            if p is None or p.rater_id != rater.id:
                raise LookupError("this comparison was already rated or is not yours")
            conv = s.get(Conversation, p.conversation_id)
            assert conv is not None
            side = chosen_side(rating)
            sa, sb = systems.get(p.system_a), systems.get(p.system_b)
            row = Comparison(
                uid=p.id, conversation_id=p.conversation_id, rater_id=rater.id, rater=rater.name,
                turn_index=p.turn_index, context=list(conv.turns), user_message=p.user_message,
                system_a=p.system_a, model_a=sa.model if sa else p.system_a,
                condition_a=sa.condition if sa else "", system_b=p.system_b,
                model_b=sb.model if sb else p.system_b, condition_b=sb.condition if sb else "",
                response_a=p.response_a, response_b=p.response_b, swapped=p.swapped, sampling=p.sampling,
                rating=rating, chosen=side, comment=comment, requested_at=p.requested_at, shown_at=p.shown_at,
                rated_at=now, rating_seconds=(now - p.shown_at).total_seconds(), latency_a_s=p.latency_a_s,
                latency_b_s=p.latency_b_s, queue_s=p.queue_s)
            s.add(row)
            # The conversation continues from the chosen reply.
            reply = p.response_a if side == "A" else p.response_b
            conv.turns = [*conv.turns, {"role": "Human", "text": p.user_message},
                          {"role": "Assistant", "text": reply}]
            conv.updated_at = now
            s.delete(p)
            s.flush()
            if delay_s:
                import time

                time.sleep(delay_s)
        return row

    # -- reading --------------------------------------------------------------------------------
    def comparisons(self) -> list[Comparison]:
        with self.session() as s:
            return list(s.scalars(select(Comparison).order_by(Comparison.id)))

    def pair_counts(self) -> dict[frozenset[str], int]:
        """Comparisons plus pending pairs per unordered pair of systems (for the scheduler)."""
        counts: dict[frozenset[str], int] = {}
        with self.session() as s:
            for table in (Comparison, Pending):
                q = select(table.system_a, table.system_b, func.count()).group_by(table.system_a, table.system_b)
                for a, b, n in s.execute(q):
                    key = frozenset((a, b))
                    counts[key] = counts.get(key, 0) + n
        return counts


def _sqlite_pragmas(dbapi_con, _record) -> None:
    cur = dbapi_con.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a commit is on disk before the server answers
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def comparison_records(url: str | Path) -> list[dict[str, Any]]:
    """Every stored comparison as a JSON-ready dict (an existing database only)."""
    return [c.to_record() for c in FeedbackStore(url, create=False).comparisons()]


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, default=str)
