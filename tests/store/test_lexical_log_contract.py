"""The lexical index every replica holds in memory (store/lexical_index.py) against the Store's log
(every backend): another replica answers from every acknowledged change at once, and an index built up
batch by batch, with deletes and rewrites between searches, scores exactly as one read in one go."""

from __future__ import annotations

import random

from botline.domain import bm25
from botline.domain.knowledge import DocumentWrite
from botline.knowledge.analysis import query_terms, terms
from botline.store import Store, open_store
from tests.store.test_knowledge_contract import ALICE, collection, found, index_all, write


async def test_another_replica_answers_from_every_acknowledged_change(store: Store, replica: Store) -> None:
    c = await collection(store)
    written = await write(store, c, DocumentWrite(name="plans", contents="premium plan price list"),
                          DocumentWrite(name="hours", contents="support opening hours"))
    await index_all(store)
    assert await found(replica, [c], "premium price") == ["plans"]
    assert await found(replica, [c], "support hours") == ["hours"]

    assert await store.documents.delete(ALICE, c, written[1][0])
    assert await found(replica, [c], "support hours") == []

    await write(store, c, DocumentWrite(name="plans", contents="refund policy for cancelled orders"))
    assert await found(replica, [c], "premium price") == [], "the old text leaves with the rewrite"
    await index_all(store)
    assert await found(replica, [c], "refund policy") == ["plans"]
    assert await found(replica, [c], "premium price") == []

    await store.documents.clear(ALICE, c)
    assert await found(replica, [c], "refund policy") == []
    await write(store, c, DocumentWrite(name="fresh", contents="refund window of thirty days"))
    await index_all(store)
    assert await found(replica, [c], "refund") == ["fresh"]

    assert await store.collections.delete(ALICE, c)
    assert await found(replica, [c], "refund") == []


async def test_an_index_built_batch_by_batch_scores_as_one_read_in_one_go(
    store: Store, replica: Store, store_location: tuple[str, str],
) -> None:
    """2,300 documents in growing batches (more than one page of the log, several segments merged), some
    deleted and some rewritten between the replica's searches; then the replica, a Store opened afresh and
    BM25 computed here over the surviving texts agree on the top 10 and its scores."""
    rng = random.Random(11)
    words = [f"w{n}" for n in range(300)]
    c = await collection(store)
    texts: dict[str, str] = {}
    ids: dict[str, str] = {}
    # "everywhere" is in every document, so at FTS5's IDF floor: read last, for the documents in reach only
    queries = ["w1 w2 w3", "w17 w250", "w5", "w0 w299 w42 w7", "everywhere w3 w250", "everywhere"]
    number = 0
    for batch in (1, 3, 9, 27, 81, 243, 600, 1336):
        fresh = {f"d{n}": " ".join(["everywhere", *rng.choices(words[:rng.randint(5, 300)], k=rng.randint(3, 40))])
                 for n in range(number, number + batch)}
        number += batch
        written = await write(store, c, *(DocumentWrite(name=name, contents=text) for name, text in fresh.items()))
        ids.update(zip(fresh, (document_id for document_id, _ in written), strict=True))
        await index_all(store)
        texts.update(fresh)
        for name in rng.sample(sorted(texts), k=min(len(texts) // 10, 40)):
            if rng.random() < 0.5:
                assert await store.documents.delete(ALICE, c, ids[name])
                del texts[name]
            else:
                texts[name] = " ".join(["everywhere", *rng.choices(words, k=rng.randint(3, 40))])
                await write(store, c, DocumentWrite(name=name, contents=texts[name]))
        await index_all(store)
        for query in queries:
            await replica.documents.search([c], query_terms(query), limit=10)
    url, prefix = store_location
    async with await open_store(url, redis_prefix=prefix) as afresh:
        for query in queries:
            every = _brute_force(texts, ids, query_terms(query))
            expected, scores = every[:10], [score for _, score in every]
            answers = []
            for reader in (replica, afresh):
                hits = await reader.documents.search([c], query_terms(query), limit=10)
                names = {d.id: d.name for d in await reader.documents.many(ALICE, [h.document_id for h in hits])}
                answers.append([(names[h.document_id], round(h.score, 9)) for h in hits])
            assert answers[0] == answers[1], query
            assert [score for _, score in answers[0]] == [score for _, score in expected], query
            untied = [pair for pair in expected if scores.count(pair[1]) == 1]
            assert set(untied) <= set(answers[0]), query  # documents tied at 1e-9 may swap places


def _brute_force(texts: dict[str, str], ids: dict[str, str], query: list[str]) -> list[tuple[str, float]]:
    """Every document holding a query term, by raw BM25, ties by document id (as the index breaks them)."""
    analysed = {name: terms(text) for name, text in texts.items()}
    lengths = {name: len(words) + 1 for name, words in analysed.items()}
    average = sum(lengths.values()) / len(lengths)
    frequencies = [sum(1 for words in analysed.values() if term in words) for term in query]
    weight = bm25.query_weight(len(texts), frequencies)
    raw = {name: sum(bm25.term_score(bm25.idf(len(texts), df), words.count(term), lengths[name], average)
                     for term, df in zip(query, frequencies, strict=True) if term in words)
           for name, words in analysed.items() if any(term in words for term in query)}
    ranked = sorted(raw.items(), key=lambda pair: (-pair[1], ids[pair[0]]))
    return [(name, round(bm25.normalise(score, weight), 9)) for name, score in ranked]
