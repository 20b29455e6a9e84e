"""SQLite repository of skills."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from botline.domain.skills import Skill
from botline.store.base import SkillRepository
from botline.store.sqlite_base import _dump, _Repo, reachable_methods

INSERT = "INSERT INTO skills (id, account_id, slug, created_at, data) VALUES (?, ?, ?, ?, ?)"


def _row(skill: Skill) -> tuple[str, str, str, str, str]:
    return skill.id, skill.account_id, skill.slug, skill.created_at.isoformat(), _dump(skill)


@reachable_methods
class SqliteSkills(_Repo, SkillRepository):
    async def create(self, skill: Skill) -> None:
        await self._write(INSERT, _row(skill))

    async def get(self, account_id: str, skill_id: str) -> Skill | None:
        return await self._one(Skill, "SELECT data FROM skills WHERE id = ? AND account_id = ?", (skill_id, account_id))

    async def get_many(self, account_id: str, skill_ids: Sequence[str]) -> list[Skill]:
        if not skill_ids:
            return []
        marks = ", ".join("?" * len(skill_ids))
        found = await self._all(
            Skill, f"SELECT data FROM skills WHERE account_id = ? AND id IN ({marks})", (account_id, *skill_ids)
        )
        by_id = {skill.id: skill for skill in found}
        return [by_id[skill_id] for skill_id in dict.fromkeys(skill_ids) if skill_id in by_id]

    async def list_for_account(self, account_id: str) -> list[Skill]:
        return await self._all(
            Skill, "SELECT data FROM skills WHERE account_id = ? ORDER BY created_at, id", (account_id,)
        )

    def _replace(self, conn: sqlite3.Connection, skill: Skill, stored_id: str) -> bool:
        """Writes `skill`'s content over the stored row `stored_id`, keeping its id and createdAt."""
        row = conn.execute("SELECT data FROM skills WHERE id = ?", (stored_id,)).fetchone()
        if row is None:
            return False
        stored = Skill.model_validate_json(row[0])
        merged = skill.model_copy(update={"id": stored.id, "created_at": stored.created_at})
        conn.execute("UPDATE skills SET slug = ?, data = ? WHERE id = ?", (merged.slug, _dump(merged), stored.id))
        return True

    async def update(self, skill: Skill) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            owned = conn.execute(
                "SELECT 1 FROM skills WHERE id = ? AND account_id = ?", (skill.id, skill.account_id)
            ).fetchone()
            return owned is not None and self._replace(conn, skill, skill.id)

        return await self._run(work)

    async def upsert(self, skill: Skill) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT id FROM skills WHERE account_id = ? AND slug = ?", (skill.account_id, skill.slug)
            ).fetchone()
            if row is not None:
                self._replace(conn, skill, row[0])
                return False
            conn.execute(INSERT, _row(skill))
            return True

        return await self._run(work)

    async def delete(self, account_id: str, skill_id: str) -> bool:
        return await self._write("DELETE FROM skills WHERE id = ? AND account_id = ?", (skill_id, account_id)) > 0

    async def clear(self, account_id: str) -> int:
        return await self._write("DELETE FROM skills WHERE account_id = ?", (account_id,))
