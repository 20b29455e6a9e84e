"""Every Redis key the Redis backend uses, built in one place.

Layout (P is the prefix, "botline" by default):

    P:account:{id}                                string  Account JSON
    P:accounts                                    zset    account ids, scored by created_at (µs)
    P:api_key:{id}                                string  ApiKey JSON
    P:api_key_hash:{sha256}                       string  key id (unique index)
    P:api_keys                                    set     every key id (count)
    P:account:{account}:api_keys                  zset    the account's key ids by created_at
    P:gateway:{id}                                string  Gateway JSON
    P:account:{account}:gateway_slug:{slug}       string  gateway id (unique per account)
    P:account:{account}:gateways                  zset    the account's gateway ids by created_at
    P:llm_connection:{id}                         string  LlmConnection JSON
    P:account:{account}:llm_connections           zset    the account's connection ids by created_at
    P:account:{account}:llm_connection_name:{name} string connection id (unique name per account)
    P:llm_connection_stats:{id}                   hash    the connection's counters (ConnectionStats fields)
    P:account:{account}:llm_connection_stats      set     ids of the account's connections with counters
    P:policy:{id}                                 string  Policy JSON
    P:account:{account}:policies                  zset    the account's policy ids by created_at
    P:policy_violation:{id}                       string  Violation JSON
    P:account:{account}:policy_violations         zset    the account's violation ids by timestamp (µs)
    P:chat_client:{id}                            string  ChatClient JSON
    P:account:{account}:chat_clients              zset    the account's chat client ids by created_at
    P:session:{id}                                string  Session JSON
    P:session_access_key:{key}                    string  session id (unique index)
    P:account:{account}:client:{client}:sessions  zset    the client's session ids by created_at
    P:account:{account}:client:{client}:tag:{tag} zset    the client's session ids with that tag, by created_at
    P:sessions_by_expiry                          zset    every session id, scored by expires_at (epoch s)
    P:session:{id}:message_ids                    list    message ids in append order
    P:session:{id}:messages                       hash    message id -> Message JSON
    P:session:{id}:media                          hash    answer file id -> AnswerMedia JSON
    P:session:{id}:media_data                     hash    answer file id -> its bytes, base64
    P:session:{id}:media_ids                      list    answer file ids in the order they were added
    P:blob:{key}                                  string  JSON contentType, expiresAt, data (base64); PX TTL
    P:account:{account}:usage                     zset    usage bucket members, all score 0 (lex)
    P:usage:{account}:{gateway}:{hour}:{model}    hash    requests/errors/input_tokens/output_tokens
    P:counter:{name}                              string  rate-limit counter (TTL)
    P:inbound:{id}                                string  InboundRecord JSON (TTL once answered)
    P:inbound_dedupe:{dedupe key}                 string  "{deadline ms}:{record id}" (TTL once answered)
    P:account:{account}:client:{client}:inbound:{integration}:{chat}
                                                  zset    the chat's pending record ids, by sequence
    P:inbound_chats                               zset    JSON [account, client, integration, chat] of
                                                          every chat with pending records, by oldest sequence
    P:inbound_answered                            zset    answered record ids, by dedupe deadline (epoch s)
    P:inbound_sequence                            string  INCR counter ordering recorded messages
    P:lock:{name}                                 string  lease token (PX TTL)
    P:server_value:{name}                         string  a value shared by every replica (SET NX)
    P:reservation:{scope}                         zset    reservation ids by expiry (epoch s; key TTL)
    P:reservation:{scope}:amounts                 hash    reservation id -> bytes
    P:memory:{id}                                 string  Memory JSON
    P:account:{account}:memories                  zset    the account's memory ids by updated_at (µs)
    P:account:{account}:memory_user:{user}        zset    the user's memory ids by updated_at (µs)
    P:memories_by_expiry                          zset    every memory id, scored by expires_at (epoch s)
    P:batch_workflow:{id}                         string  Workflow JSON
    P:account:{account}:batch_workflows           zset    the account's workflow ids by created_at
    P:batch_workflow:{id}:jobs                    zset    the workflow's job ids by created_at
    P:batch_job:{id}                              string  BatchJob JSON
    P:account:{account}:batch_jobs                zset    the account's job ids by created_at
    P:batch_jobs_active                           zset    Active job ids (every account) by created_at
    P:batch_job:{id}:events                       list    JobEvent JSON, oldest first (capped)
    P:batch_job:{id}:sequence                     string  INCRBY counter numbering imported items
    P:batch_job:{id}:items                        zset    every item id by sequence
    P:batch_job:{id}:queue                        zset    pending item ids nobody holds, by priority then sequence
    P:batch_job:{id}:running                      zset    held item ids by lease deadline (epoch s)
    P:batch_job:{id}:claims                       hash    held item id -> claim token
    P:batch_job:{id}:state:{state}                set     item ids in that final state
    P:batch_job:{id}:processed                    zset    item ids by processedAt (epoch s)
    P:batch_job:{id}:totals                       hash    cost, confidenceSum, confidenceCount
    P:batch_item:{id}                             string  BatchItem JSON
    P:account:{account}:batch_running             zset    held item ids of every job of the account by lease deadline
    P:kb_collection:{id}                          string  Collection JSON
    P:account:{account}:kb_collections            zset    the account's collection ids by created_at
    P:kb_document:{id}                            string  KnowledgeDocument JSON
    P:kb_collection:{c}:documents                 zset    the collection's document ids by created_at
    P:kb_collection:{c}:reference:{ref}           set     ids of the collection's documents with that __ref
    P:kb_collection:{c}:name:{name}               string  document id (unique per collection)
    P:kb_queue                                    zset    queued document ids, by when they may be claimed (ms)
    P:kb_queue_attempts                           hash    document id -> claims of its current version
    P:kb_collection:{c}:lexical_state             hash    seq (the lexical log's counter), reset (its last reset)
    P:kb_collection:{c}:lexical_log               zset    document id -> seq of its log row
    P:kb_collection:{c}:lexical_terms             hash    document id -> base64 encoded terms ("": a tombstone)
    P:skill:{id}                                  string  Skill JSON
    P:account:{account}:skill_slug:{slug}         string  skill id (unique per account)
    P:account:{account}:skills                    zset    the account's skill ids by created_at (µs)
    P:signal:{topic}                              channel pub/sub signals between replicas (no key is stored)
    P:kb_vector_set:{c}                           hash    account, model, generation of the collection's vectors
    P:kb_vectors:{c}                              hash    document id -> "{version}:{base64 float32 vector}"

Ids are UUIDs and slugs are [a-z0-9-], so ":" inside a key part cannot collide; the free-form
parts (a session tag, a model name, a dedupe key, a chat id, a lock name, an external user id) are
always the last part.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

KEY_SEPARATOR = ":"
GLOB_SPECIAL = re.compile(r"[*?\[\]\\]")


@dataclass(frozen=True, slots=True)
class UsageBucket:
    """One hourly usage aggregate. `member()` sorts by hour first, so a lex range selects `since`."""

    hour: str
    gateway_id: str
    model: str

    def member(self) -> str:
        return json.dumps([self.hour, self.gateway_id, self.model])

    @classmethod
    def from_member(cls, member: str) -> UsageBucket:
        hour, gateway_id, model = json.loads(member)
        return cls(hour=hour, gateway_id=gateway_id, model=model)

    @staticmethod
    def lex_from_hour(hour: str) -> str:
        """The inclusive ZRANGEBYLEX lower bound of every member at or after `hour`."""
        return "[" + json.dumps([hour])[:-1]


class BatchJobPart(StrEnum):
    """The keys a batch job owns besides its document (see the layout above)."""

    EVENTS = "events"
    SEQUENCE = "sequence"
    ITEMS = "items"
    QUEUE = "queue"
    RUNNING = "running"
    CLAIMS = "claims"
    PROCESSED = "processed"
    TOTALS = "totals"


class RedisKeys:
    """Builds the key names of one store; the prefix lets several stores share a Redis."""

    def __init__(self, prefix: str = "botline") -> None:
        if not prefix:
            raise ValueError("a Redis key prefix must not be empty")
        self.prefix = prefix

    def _key(self, *parts: str) -> str:
        return KEY_SEPARATOR.join((self.prefix, *parts))

    def pattern(self) -> str:
        """A SCAN MATCH pattern for every key of this prefix (glob characters in it escaped)."""
        return self._glob("*")

    def _glob(self, *parts: str) -> str:
        """A glob over keys (or channels) of this prefix: the prefix's own glob characters escaped."""
        return KEY_SEPARATOR.join((GLOB_SPECIAL.sub(r"\\\g<0>", self.prefix), *parts))

    # accounts
    def account(self, account_id: str) -> str:
        return self._key("account", account_id)

    def accounts_index(self) -> str:
        return self._key("accounts")

    # API keys
    def api_key(self, key_id: str) -> str:
        return self._key("api_key", key_id)

    def api_key_by_hash(self, key_hash: str) -> str:
        return self._key("api_key_hash", key_hash)

    def api_keys_all(self) -> str:
        return self._key("api_keys")

    def api_keys_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "api_keys")

    # gateways
    def gateway(self, gateway_id: str) -> str:
        return self._key("gateway", gateway_id)

    def gateway_by_slug(self, account_id: str, slug: str) -> str:
        return self._key("account", account_id, "gateway_slug", slug)

    def gateways_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "gateways")

    # LLM connections
    def llm_connection(self, connection_id: str) -> str:
        return self._key("llm_connection", connection_id)

    def llm_connections_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "llm_connections")

    def llm_connection_by_name(self, account_id: str, name: str) -> str:
        return self._key("account", account_id, "llm_connection_name", name)

    def llm_connection_stats(self, connection_id: str) -> str:
        return self._key("llm_connection_stats", connection_id)

    def llm_connection_stats_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "llm_connection_stats")

    # policies
    def policy(self, policy_id: str) -> str:
        return self._key("policy", policy_id)

    def policies_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "policies")

    def violation(self, violation_id: str) -> str:
        return self._key("policy_violation", violation_id)

    def violations_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "policy_violations")

    # chat clients
    def chat_client(self, client_id: str) -> str:
        return self._key("chat_client", client_id)

    def chat_clients_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "chat_clients")

    # sessions and messages
    def session(self, session_id: str) -> str:
        return self._key("session", session_id)

    def session_by_access_key(self, access_key: str) -> str:
        return self._key("session_access_key", access_key)

    def sessions_of_client(self, account_id: str, chat_client_id: str) -> str:
        return self._key("account", account_id, "client", chat_client_id, "sessions")

    def sessions_with_tag(self, account_id: str, chat_client_id: str, tag: str) -> str:
        """The free-form tag is the last part, so no tag can name another key."""
        return self._key("account", account_id, "client", chat_client_id, "tag", tag)

    def sessions_by_expiry(self) -> str:
        return self._key("sessions_by_expiry")

    def message_ids(self, session_id: str) -> str:
        return self._key("session", session_id, "message_ids")

    def messages(self, session_id: str) -> str:
        return self._key("session", session_id, "messages")

    # answer files and shared blobs
    def media(self, session_id: str) -> str:
        return self._key("session", session_id, "media")

    def media_data(self, session_id: str) -> str:
        return self._key("session", session_id, "media_data")

    def media_ids(self, session_id: str) -> str:
        return self._key("session", session_id, "media_ids")

    def blob(self, key: str) -> str:
        return self._key("blob", key)

    # usage
    def usage_index(self, account_id: str) -> str:
        return self._key("account", account_id, "usage")

    def usage_bucket(self, account_id: str, bucket: UsageBucket) -> str:
        return self._key("usage", account_id, bucket.gateway_id, bucket.hour, bucket.model)

    # rate-limit counters
    def counter(self, name: str) -> str:
        return self._key("counter", name)

    # inbound channel messages
    def inbound_record(self, record_id: str) -> str:
        return self._key("inbound", record_id)

    def inbound_dedupe(self, dedupe_key: str) -> str:
        """The free-form dedupe key (it ends with the provider's message id) is the last part."""
        return self._key("inbound_dedupe", dedupe_key)

    def inbound_pending(self, account_id: str, chat_client_id: str, integration: str, chat_id: str) -> str:
        """The free-form chat id is the last part."""
        return self._key("account", account_id, "client", chat_client_id, "inbound", integration, chat_id)

    def inbound_chats(self) -> str:
        return self._key("inbound_chats")

    def inbound_answered(self) -> str:
        return self._key("inbound_answered")

    def inbound_sequence(self) -> str:
        return self._key("inbound_sequence")

    # leases between replicas
    def lock(self, name: str) -> str:
        return self._key("lock", name)

    # shared server values and in-flight reservations
    def server_value(self, name: str) -> str:
        return self._key("server_value", name)

    def reservations(self, scope: str) -> str:
        return self._key("reservation", scope)

    def reservation_amounts(self, scope: str) -> str:
        return self._key("reservation", scope, "amounts")

    # per-user memories
    def memory(self, memory_id: str) -> str:
        return self._key("memory", memory_id)

    def memories_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "memories")

    def memories_of_user(self, account_id: str, external_user_id: str) -> str:
        """The free-form external user id is the last part."""
        return self._key("account", account_id, "memory_user", external_user_id)

    def memories_by_expiry(self) -> str:
        return self._key("memories_by_expiry")

    # skills
    def skill(self, skill_id: str) -> str:
        return self._key("skill", skill_id)

    def skill_by_slug(self, account_id: str, slug: str) -> str:
        return self._key("account", account_id, "skill_slug", slug)

    def skills_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "skills")

    # scheduled continuations
    def schedule(self, item_id: str) -> str:
        return self._key("schedule", item_id)

    def schedules_of_client(self, account_id: str, chat_client_id: str) -> str:
        return self._key("account", account_id, "client", chat_client_id, "schedules")

    def schedules_active(self) -> str:
        return self._key("schedules_active")

    def schedule_claim(self, item_id: str, fire_time: str) -> str:
        return self._key("schedule_claim", item_id, fire_time)

    # batch workflows, jobs and items
    def batch_workflow(self, workflow_id: str) -> str:
        return self._key("batch_workflow", workflow_id)

    def batch_workflows_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "batch_workflows")

    def batch_jobs_of_workflow(self, workflow_id: str) -> str:
        return self._key("batch_workflow", workflow_id, "jobs")

    def batch_job(self, job_id: str) -> str:
        return self._key("batch_job", job_id)

    def batch_jobs_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "batch_jobs")

    def batch_jobs_active(self) -> str:
        return self._key("batch_jobs_active")

    def batch_job_part(self, job_id: str, part: BatchJobPart) -> str:
        """One of the job's own keys (events, queue, claims...)."""
        return self._key("batch_job", job_id, part.value)

    def batch_job_state(self, job_id: str, state: str) -> str:
        """The set of the job's items in one final state."""
        return self._key("batch_job", job_id, "state", state)

    def batch_item(self, item_id: str) -> str:
        return self._key("batch_item", item_id)

    def batch_running_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "batch_running")

    def batch_running_of_account_parts(self) -> tuple[str, str]:
        """What goes before and after the account id in `batch_running_of_account` (the claim script
        builds the key from the job's accountId)."""
        head, tail = self.batch_running_of_account("\0").split("\0")
        return head, tail

    def batch_item_prefix(self) -> str:
        """What `batch_item` puts before the id (Lua scripts build item keys from ids with it)."""
        return self._key("batch_item", "")
    # knowledge collections, documents, the indexing queue and the lexical index
    def kb_collection(self, collection_id: str) -> str:
        return self._key("kb_collection", collection_id)

    def kb_collections_of_account(self, account_id: str) -> str:
        return self._key("account", account_id, "kb_collections")

    def kb_document(self, document_id: str) -> str:
        return self._key("kb_document", document_id)

    def kb_documents_of_collection(self, collection_id: str) -> str:
        return self._key("kb_collection", collection_id, "documents")

    def kb_with_reference(self, collection_id: str, reference: str) -> str:
        """The free-form reference is the last part."""
        return self._key("kb_collection", collection_id, "reference", reference)

    def kb_document_by_name(self, collection_id: str, name: str) -> str:
        """The free-form name is the last part."""
        return self._key("kb_collection", collection_id, "name", name)

    def kb_queue(self) -> str:
        return self._key("kb_queue")

    def kb_queue_attempts(self) -> str:
        return self._key("kb_queue_attempts")

    def kb_legacy_index_patterns(self) -> list[str]:
        """SCAN patterns of the keys of the lexical index before the log (kb_stats marks that it exists)."""
        return [self._glob("kb_terms", "*"), self._glob("kb_collection", "*", "postings", "*"),
                self._glob("kb_collection", "*", "lengths")]

    def kb_legacy_index_markers(self) -> list[str]:
        return [self._key("kb_frequencies"), self._key("kb_stats")]

    def kb_collections_of_accounts_pattern(self) -> str:
        return self._glob("account", "*", "kb_collections")

    def kb_lexical_state(self, collection_id: str) -> str:
        return self._key("kb_collection", collection_id, "lexical_state")

    def kb_lexical_log(self, collection_id: str) -> str:
        return self._key("kb_collection", collection_id, "lexical_log")

    def kb_lexical_terms(self, collection_id: str) -> str:
        return self._key("kb_collection", collection_id, "lexical_terms")

    # pub/sub signals between replicas (channels, not keys)
    def signal(self, topic: str) -> str:
        return self._key("signal", topic)

    def signal_pattern(self) -> str:
        """The PSUBSCRIBE pattern of every signal channel of this prefix (glob characters escaped)."""
        return self._glob("signal", "*")

    def signal_topic(self, channel: str) -> str:
        """The topic of a channel named by `signal`."""
        return channel.removeprefix(self.signal(""))

    def kb_vector_set(self, collection_id: str) -> str:
        return self._key("kb_vector_set", collection_id)

    def kb_vectors(self, collection_id: str) -> str:
        return self._key("kb_vectors", collection_id)
