"""Redis repository of skills: a JSON document per skill, a unique slug pointer per account and the
account's zset of ids by createdAt. Writes that depend on what is stored run under WATCH (retried)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from redis.asyncio.client import Pipeline

from botline.domain.skills import Skill
from botline.store.base import SkillRepository
from botline.store.documents import load_many
from botline.store.redis_base import _claim, _dump, _fetch, _reachable_methods, _Repo, _repoint, _score


@_reachable_methods
class RedisSkills(_Repo, SkillRepository):
    def _add(self, pipe: Pipeline, skill: Skill) -> None:
        pipe.set(self._keys.skill(skill.id), _dump(skill))
        pipe.set(self._keys.skill_by_slug(skill.account_id, skill.slug), skill.id)
        pipe.zadd(self._keys.skills_of_account(skill.account_id), {skill.id: _score(skill.created_at)})

    async def create(self, skill: Skill) -> None:
        unique = [self._keys.skill(skill.id), self._keys.skill_by_slug(skill.account_id, skill.slug)]
        await self._insert(unique, f"skill {skill.id} or slug {skill.slug!r}", lambda pipe: self._add(pipe, skill))

    async def get(self, account_id: str, skill_id: str) -> Skill | None:
        skill = await self._get(Skill, self._keys.skill(skill_id))
        return skill if skill is not None and skill.account_id == account_id else None

    async def get_many(self, account_id: str, skill_ids: Sequence[str]) -> list[Skill]:
        ids = list(dict.fromkeys(skill_ids))
        if not ids:
            return []
        raws = cast(list[str | None], await self._redis.mget([self._keys.skill(skill_id) for skill_id in ids]))
        return [s for s in load_many(Skill, (raw for raw in raws if raw is not None)) if s.account_id == account_id]

    async def list_for_account(self, account_id: str) -> list[Skill]:
        return await self._indexed(Skill, self._keys.skills_of_account(account_id), self._keys.skill)

    async def _replace(self, pipe: Pipeline, skill: Skill, stored: Skill) -> None:
        """Under WATCH of the stored document: claims the new slug, then (MULTI) writes `skill`'s
        content over `stored`, keeping its id and createdAt."""
        old_slug = self._keys.skill_by_slug(stored.account_id, stored.slug)
        new_slug = self._keys.skill_by_slug(stored.account_id, skill.slug)
        await _claim(pipe, old_slug, new_slug, f"skill slug {skill.slug!r}")
        merged = skill.model_copy(update={"id": stored.id, "created_at": stored.created_at})
        pipe.multi()
        _repoint(pipe, old_slug, new_slug, stored.id)
        pipe.set(self._keys.skill(stored.id), _dump(merged))

    async def update(self, skill: Skill) -> bool:
        doc_key = self._keys.skill(skill.id)

        async def body(pipe: Pipeline) -> bool:
            stored = await _fetch(pipe, Skill, doc_key)
            if stored is None or stored.account_id != skill.account_id:
                return False
            await self._replace(pipe, skill, stored)
            return True

        return await self._atomic(body, doc_key)

    async def upsert(self, skill: Skill) -> bool:
        pointer = self._keys.skill_by_slug(skill.account_id, skill.slug)

        async def body(pipe: Pipeline) -> bool:
            stored_id = cast(str | None, await pipe.get(pointer))
            stored = None if stored_id is None else await self._watched(pipe, stored_id)
            if stored is None:
                pipe.multi()
                self._add(pipe, skill)
                return True
            await self._replace(pipe, skill, stored)
            return False

        return await self._atomic(body, pointer)

    async def _watched(self, pipe: Pipeline, skill_id: str) -> Skill | None:
        key = self._keys.skill(skill_id)
        await pipe.watch(key)
        return await _fetch(pipe, Skill, key)

    async def delete(self, account_id: str, skill_id: str) -> bool:
        doc_key = self._keys.skill(skill_id)

        async def body(pipe: Pipeline) -> bool:
            skill = await _fetch(pipe, Skill, doc_key)
            if skill is None or skill.account_id != account_id:
                return False
            pipe.multi()
            pipe.delete(doc_key, self._keys.skill_by_slug(account_id, skill.slug))
            pipe.zrem(self._keys.skills_of_account(account_id), skill_id)
            return True

        return await self._atomic(body, doc_key)

    async def clear(self, account_id: str) -> int:
        index = self._keys.skills_of_account(account_id)

        async def body(pipe: Pipeline) -> int:
            ids = cast(list[str], await pipe.zrange(index, 0, -1))
            raws = cast(list[str | None], await pipe.mget([self._keys.skill(i) for i in ids])) if ids else []
            skills = load_many(Skill, (raw for raw in raws if raw is not None))
            pipe.multi()
            for skill in skills:
                pipe.delete(self._keys.skill(skill.id), self._keys.skill_by_slug(account_id, skill.slug))
            pipe.delete(index)
            return len(skills)

        return await self._atomic(body, index)
