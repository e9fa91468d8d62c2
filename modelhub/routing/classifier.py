"""Request complexity: a small interface and its first, heuristic implementation.

``classify(request, route)`` is the one entry point (the strategies and the classify
endpoint call it); ``Classification`` its answer. A better classifier replaces the body of
``classify`` and keeps both.

The heuristic reads the last user message, and the system prompt at a discount: a long,
constant system prompt would otherwise make every request of an application look complex.
Each family of evidence gives a strength in 0..1; the score is the weighted sum, clamped to
0..1, and a score at or above the route's threshold is complex.

    length       characters, up to ``long_chars`` (continuous: scores rarely tie)
    code         code fences, inline code, code punctuation, words only code uses
    technical    technical terms (saturates at 3 distinct)
    reasoning    analyse, compare, trade-offs, plan, ... (saturates at 2)
    research     sources, literature, in-depth, ... (saturates at 2)
    multi_step   list items, sequence words (first ... then), step by step
    question     open questions (why, how would, what if), several questions
    constraints  budgets, limits, amounts of money and time
    image        the request carries an image (the category is then multimedia)
    simple       a greeting, thanks, or a plain lookup opening the message (negative)
    short        a short message with none of the complex families above (negative)

Keywords match whole words, case-insensitively ("capital" is not "api", "poetry" is not
"try"); a keyword also matches its plural in -s and -es; a keyword of several words (or with
punctuation: "trade-off", "node.js") matches those words in a row, whatever separates them.
A route's ``classifier_config`` changes the defaults: ``keywords`` replaces a family's list,
``extra_keywords`` adds to it, ``weights`` replaces weights (``system`` scales what the
system prompt adds), ``long_chars`` and ``short_chars`` the lengths. It is compiled once per
distinct config; a config that ``classifier_config_errors`` rejects is ignored (the defaults
apply, and the signal ``config_invalid`` says so) rather than breaking chat."""

from __future__ import annotations

import logging
import re
import string
from dataclasses import dataclass, field

import orjson

from ..providers.base import ChatRequest

log = logging.getLogger("modelhub.routing")

TIERS = ("simple", "complex")
CATEGORIES = ("simple", "technical", "research", "multimedia")
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class Classification:
    tier: str  # "simple" | "complex"
    category: str  # "simple" | "technical" | "research" | "multimedia"
    score: float  # 0..1: the higher, the more complex
    signals: tuple[str, ...] = ()  # the signals that fired, e.g. ("code", "multi_step")


# Keyword families, in the order signals are listed. "simple" counts only in a message's
# opening words: "what is" deep inside a long request says nothing about it.
KEYWORD_FAMILIES = ("code", "technical", "reasoning", "research", "multi_step", "question", "constraints", "simple")
ANYWHERE_FAMILIES = KEYWORD_FAMILIES[:-1]  # all but "simple"
# Distinct hits at which a family is at full strength.
SATURATION = {
    "code": 2,
    "technical": 3,
    "reasoning": 2,
    "research": 2,
    "multi_step": 2,
    "question": 2,
    "constraints": 2,
    "simple": 1,
}
# The families whose presence makes a message more than a short lookup.
COMPLEX_FAMILIES = ("code", "technical", "reasoning", "research", "multi_step", "constraints")
# The families a system prompt can contribute (its length, code, lists and questions describe
# the application, not the request).
SYSTEM_FAMILIES = ("technical", "reasoning", "research")


def _listed(text: str) -> tuple[str, ...]:
    """Keywords written as one comma-separated string (the formatter keeps it short)."""
    return tuple(word.strip() for word in text.split(","))


DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "code": _listed(
        "def, elif, println, printf, lambda, const, struct, namespace, async, nullptr, stacktrace, traceback, "
        "segfault, nullpointerexception, typeerror, valueerror, keyerror, indexerror, syntaxerror, attributeerror, "
        "importerror, undefined, npm, pip, regex, try/except, try/catch, console.log, stack trace, "
        "segmentation fault, null pointer, compile error, unit test"
    ),
    "technical": _listed(
        "api, sdk, http, https, graphql, json, xml, yaml, sql, database, postgres, postgresql, mysql, "
        "sqlite, redis, kafka, docker, kubernetes, k8s, linux, bash, python, javascript, typescript, java, "
        "golang, rust, kotlin, cpp, csharp, react, django, node.js, nodejs, algorithm, compiler, runtime, "
        "latency, throughput, cache, caching, concurrency, thread, mutex, deadlock, memory leak, cpu, gpu, cuda, "
        "server, backend, frontend, microservice, monolith, deployment, git, repository, function, variable, "
        "array, encryption, tls, ssl, oauth, jwt, authentication, endpoint, schema, migration, orm, aws, gcp, "
        "azure, terraform, bug, debug, exception, recursion, big o, matrix, integral, derivative, equation, "
        "theorem, calculus, programming, code, coding, software, script, networking, protocol, distributed, "
        "scalability, neural network, machine learning, load balancer, rate limiter"
    ),
    "reasoning": _listed(
        "analyze, analyse, analysis, compare, comparison, contrast, evaluate, evaluation, assess, assessment, "
        "explain, justify, prove, proof, derive, derivation, reasoning, implications, tradeoff, trade-off, "
        "pros and cons, optimize, optimise, optimization, optimisation, strategy, strategies, recommend, "
        "recommendation, suggest, critique, infer, deduce, hypothesis, prioritize, prioritise, root cause, "
        "diagnose, troubleshoot, design, architecture, plan, itinerary, roadmap, forecast, model the, "
        "best approach"
    ),
    "research": _listed(
        "research, sources, citations, cite, references, literature, survey, studies, evidence, peer-reviewed, "
        "comprehensive, in-depth, thorough, thoroughly, historical, whitepaper, academic, meta-analysis, "
        "systematic review, state of the art, deep dive, investigate, dissertation, thesis"
    ),
    "multi_step": _listed(
        "first, then, next, finally, afterwards, subsequently, lastly, secondly, thirdly, steps, stages, phases, "
        "step by step, step-by-step, and then, after that, followed by, walk me through"
    ),
    "question": _listed(
        "why, how do, how does, how can, how could, how should, how would, what if, difference between, "
        "differences between, which is better, is it better, should i, what would happen"
    ),
    "constraints": _listed(
        "under, within, budget, deadline, maximum, minimum, constraint, requirement, must, at most, at least, "
        "no more than, less than, more than, up to"
    ),
    "simple": _listed(
        "hi, hello, hey, thanks, thank you, good morning, good evening, what is, what's, who is, "
        "who was, who are, when is, when was, when did, where is, how much, how many, how old, define, "
        "translate, show me, tell me, list my, remind me, what time, ok, okay, yes, no"
    ),
}
DEFAULT_WEIGHTS: dict[str, float] = {
    "length": 0.3,
    "code": 0.45,
    "technical": 0.3,
    "reasoning": 0.55,
    "research": 0.5,
    "multi_step": 0.3,
    "question": 0.15,
    "constraints": 0.25,
    "image": 0.2,
    "simple": -0.25,
    "short": -0.1,
    "system": 0.5,  # not a signal: how much of the system prompt's keyword hits count
}
DEFAULT_LONG_CHARS = 1500  # the length signal's full strength
DEFAULT_SHORT_CHARS = 80  # below it, a message without complex evidence is "short"
CONFIG_KEYS = frozenset({"keywords", "extra_keywords", "weights", "long_chars", "short_chars"})
MAX_KEYWORDS = 1000  # per family
MAX_KEYWORD_CHARS = 100

# A prompt is scanned in its first and last characters only: the length signal is at full
# strength long before, and a 1 MB paste must not cost a millisecond.
SCAN_HEAD, SCAN_TAIL = 3000, 1000
OPENING_WORDS = 6  # where "simple" markers count
SYSTEM_CACHE_SIZE = 256  # distinct system prompts remembered per config
# The strength from which a signal is listed (the length is always there, a little).
SIGNAL_MIN = {"length": 1 / 3}
# Words are what is left between spaces once punctuation is a space (5 times as fast as a
# regular expression's \w+, and the same for keywords and text): "what's" is "what s".
SEPARATORS = "".join(c for c in string.punctuation if c != "_") + "‘’“”–—…«»¿¡·•"
TO_SPACE = str.maketrans(SEPARATORS, " " * len(SEPARATORS))
# A quantity: a number after a currency sign or before a unit of time, size or share
# ("$2000", "2-week", "3 days", "20%").
NUMBER = re.compile(r"\d[\d.,]*")
UNIT = re.compile(
    r"\s?-?\s?(?:%|(?:minute|hour|day|week|month|year|km|mile|kg|gb|mb|tb|usd|eur|dollar|euro|percent)s?\b)",
    re.IGNORECASE,
)
CURRENCY = frozenset("$€£¥")
MAX_NUMBERS = 64  # numbers looked at for quantities
# Lines that open with a list marker: "1. ", "2) ", "- ", "* ", "• ".
LIST_ITEM = re.compile(r"^[ \t]*(?:\d{1,2}[.)]|[-*•])[ \t]+\S", re.MULTILINE)
CODE_MARKS = ("{", "}", "()", "=>", "==", "!=", "&&", "||", "</", "/>", ";\n")
CODE_CHARS = "{}()=;<&|"  # one of them, or no mark above can be there


@dataclass(frozen=True, slots=True)
class Rules:
    """A classifier config, compiled: each family's single words (with plurals) and its
    phrases (as space-joined words), the weights and the lengths."""

    words: dict[str, frozenset[str]]
    phrases: dict[str, tuple[tuple[frozenset[str], str], ...]]  # (its words, " its words ")
    weights: dict[str, float]
    long_chars: int
    short_chars: int
    invalid: bool = False
    # The system prompt's keyword hits, by its text: applications send the same one each time.
    system_hits: dict[str, dict[str, float]] = field(default_factory=dict, compare=False)


def classify(request: ChatRequest, route) -> Classification:
    """Classify ``request`` with ``route``'s classifier settings (``route.classifier_config``
    and ``route.threshold``; a RouteSpec, or None for the defaults)."""
    rules = rules_for(getattr(route, "classifier_config", None))
    threshold = getattr(route, "threshold", None)
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    text = last_user_text(request)
    strengths = _strengths(rules, text, request.system or "", bool(request.images))
    score = min(1.0, max(0.0, sum(rules.weights[name] * s for name, s in strengths.items() if name != "system")))
    tier = "complex" if score >= threshold else "simple"
    signals = [name for name, s in strengths.items() if s >= SIGNAL_MIN.get(name, 1e-9)]
    if rules.invalid:
        signals.append("config_invalid")
    return Classification(tier, _category(tier, strengths), score, tuple(signals))


def last_user_text(request: ChatRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return ""


def _strengths(rules: Rules, text: str, system: str, images: bool) -> dict[str, float]:
    """Each signal's strength in 0..1, in the order signals are listed (``system``: 1 when
    the system prompt added keyword hits)."""
    scanned = _window(text)
    hits = _keyword_hits(rules, scanned, opening=True)
    _structure_add(hits, scanned)
    added = _system_hits(rules, system) if system else None
    if added:
        for family, n in added.items():
            hits[family] += n * rules.weights["system"]
    strengths = {"length": min(1.0, len(text) / rules.long_chars)}
    for family in KEYWORD_FAMILIES:
        strengths[family] = min(1.0, hits[family] / SATURATION[family])
    strengths["image"] = 1.0 if images else 0.0
    plain = not any(strengths[family] for family in COMPLEX_FAMILIES)
    strengths["short"] = 1.0 if plain and len(text) < rules.short_chars else 0.0
    strengths["system"] = 1.0 if added else 0.0
    return strengths


def _window(text: str) -> str:
    """The part of a message that is scanned: its head and its tail when it is long."""
    if len(text) <= SCAN_HEAD + SCAN_TAIL:
        return text
    return f"{text[:SCAN_HEAD]}\n{text[-SCAN_TAIL:]}"


def words_of(text: str) -> list[str]:
    return text.lower().translate(TO_SPACE).split()


def _keyword_hits(rules: Rules, text: str, *, opening: bool) -> dict[str, float]:
    """Distinct keywords of each family in ``text``; "simple" ones only among its opening
    words (none unless ``opening``)."""
    words = words_of(text)
    present = set(words)
    joined = None
    hits: dict[str, float] = {}
    for family in ANYWHERE_FAMILIES:
        n = len(rules.words[family] & present)
        for phrase_words, phrase in rules.phrases[family]:
            if phrase_words <= present:  # the search below only when it can succeed
                joined = joined or f" {' '.join(words)} "
                n += phrase in joined
        hits[family] = n
    hits["simple"] = 0
    if opening:
        head = words[:OPENING_WORDS]
        lead = f" {' '.join(head)} "
        hits["simple"] = len(rules.words["simple"].intersection(head)) + sum(
            phrase in lead for _, phrase in rules.phrases["simple"]
        )
    return hits


def _structure_add(hits: dict[str, float], text: str) -> None:
    """What the message's shape says: code, lists, several questions, quantities."""
    hits["code"] += _code_points(text)
    if "\n" in text and len(LIST_ITEM.findall(text)) >= 2:
        hits["multi_step"] += 2
    questions = text.count("?")
    if questions > 1:
        hits["question"] += questions - 1
    hits["constraints"] += _quantities(text)


def _quantities(text: str) -> int:
    """Amounts of money, time or size, up to what saturates the family: a pasted table of
    numbers must not cost a loop over each."""
    count = 0
    for seen, number in enumerate(NUMBER.finditer(text)):
        start = number.start()
        before = text[max(0, start - 2) : start].strip()
        if (before and before[-1] in CURRENCY) or UNIT.match(text, number.end()):
            count += 1
        if count >= SATURATION["constraints"] or seen >= MAX_NUMBERS:
            break
    return count


def _code_points(text: str) -> int:
    """A fence is code outright; inline code or a little code punctuation is a hint."""
    if "```" in text:
        return 2
    points = 1 if text.count("`") >= 2 else 0
    if not any(c in text for c in CODE_CHARS):
        return points
    marks = sum(text.count(mark) for mark in CODE_MARKS)
    return points + (2 if marks >= 6 else 1 if marks >= 3 else 0)


def _system_hits(rules: Rules, system: str) -> dict[str, float]:
    hits = rules.system_hits.get(system)
    if hits is None:
        found = _keyword_hits(rules, _window(system), opening=False)
        hits = {family: found[family] for family in SYSTEM_FAMILIES if found[family]}
        if len(rules.system_hits) >= SYSTEM_CACHE_SIZE:
            rules.system_hits.clear()
        rules.system_hits[system] = hits
    return hits


def _category(tier: str, strengths: dict[str, float]) -> str:
    """multimedia with an image; code makes it technical; otherwise a simple request is
    simple, and a complex one technical when any technical term fired, else research."""
    if strengths["image"]:
        return "multimedia"
    if strengths["code"]:
        return "technical"
    if tier == "simple":
        return "simple"
    return "technical" if strengths["technical"] else "research"


# Compiling a config ---------------------------------------------------------------------


def classifier_config_errors(config) -> list[str]:
    """What is wrong with a route's ``classifier_config`` (for the admin form); [] when it
    is usable. Empty or None is the defaults."""
    if config in (None, {}):
        return []
    if not isinstance(config, dict):
        return ["The classifier config must be a JSON object."]
    errors = [
        f"Unknown key '{key}' (known: {', '.join(sorted(CONFIG_KEYS))})." for key in config if key not in CONFIG_KEYS
    ]
    for key in ("keywords", "extra_keywords"):
        if key in config:
            errors += _keywords_errors(key, config[key])
    if "weights" in config:
        errors += _weights_errors(config["weights"])
    for key in ("long_chars", "short_chars"):
        value = config.get(key)
        if key in config and (type(value) is not int or not 1 <= value <= 1_000_000):
            errors.append(f"'{key}' must be a whole number from 1 to 1000000.")
    return errors


def _keywords_errors(key: str, value) -> list[str]:
    if not isinstance(value, dict):
        return [f"'{key}' must be an object: family -> list of keywords."]
    errors = []
    for family, words in value.items():
        if family not in KEYWORD_FAMILIES:
            errors.append(f"'{key}': unknown family '{family}' (known: {', '.join(KEYWORD_FAMILIES)}).")
        elif not isinstance(words, list) or len(words) > MAX_KEYWORDS:
            errors.append(f"'{key}.{family}' must be a list of at most {MAX_KEYWORDS} strings.")
        else:
            errors += [
                f"'{key}.{family}': {word!r} must be a string of 1 to {MAX_KEYWORD_CHARS} characters, not "
                "only punctuation."
                for word in words
                if not isinstance(word, str) or len(word) > MAX_KEYWORD_CHARS or not words_of(word)
            ]
    return errors


def _weights_errors(value) -> list[str]:
    if not isinstance(value, dict):
        return ["'weights' must be an object: signal -> number."]
    errors = []
    for name, weight in value.items():
        if name not in DEFAULT_WEIGHTS:
            errors.append(f"'weights': unknown signal '{name}' (known: {', '.join(DEFAULT_WEIGHTS)}).")
        elif type(weight) not in (int, float) or not (0 if name == "system" else -1) <= weight <= 1:
            low = 0 if name == "system" else -1
            errors.append(f"'weights.{name}' must be a number from {low} to 1.")
    return errors


def rules_compile(config: dict | None) -> Rules:
    """The config merged over the defaults and compiled; the defaults, flagged invalid, when
    the config has errors."""
    config = config or {}
    errors = classifier_config_errors(config)
    if errors:
        log.warning("classifier config ignored, the defaults apply: %s", "; ".join(errors))
        return _compiled({}, invalid=True)
    return _compiled(config, invalid=False)


def _compiled(config: dict, *, invalid: bool) -> Rules:
    lists = {**DEFAULT_KEYWORDS, **config.get("keywords", {})}
    for family, extra in config.get("extra_keywords", {}).items():
        lists[family] = (*lists[family], *extra)
    words: dict[str, frozenset[str]] = {}
    phrases: dict[str, tuple[tuple[frozenset[str], str], ...]] = {}
    for family in KEYWORD_FAMILIES:
        split = [words_of(keyword) for keyword in lists[family]]
        singles = {parts[0] for parts in split if len(parts) == 1}
        words[family] = frozenset(singles | {w + "s" for w in singles} | {w + "es" for w in singles})
        variants = {variant for parts in split if len(parts) > 1 for variant in _plurals(parts)}
        phrases[family] = tuple((frozenset(v), f" {' '.join(v)} ") for v in sorted(variants))
    return Rules(
        words=words,
        phrases=phrases,
        weights={**DEFAULT_WEIGHTS, **config.get("weights", {})},
        long_chars=config.get("long_chars", DEFAULT_LONG_CHARS),
        short_chars=config.get("short_chars", DEFAULT_SHORT_CHARS),
        invalid=invalid,
    )


def _plurals(parts: list[str]) -> list[tuple[str, ...]]:
    """A phrase's words, and the same with its last word in -s and -es ("trade-off":
    trade off, trade offs, trade offes)."""
    return [(*parts[:-1], parts[-1] + ending) for ending in ("", "s", "es")]


DEFAULT_RULES = _compiled({}, invalid=False)
_rules_cache: dict[bytes, Rules] = {}
RULES_CACHE_SIZE = 64


def rules_for(config) -> Rules:
    """The compiled rules of a config, once per distinct config (keyed by its JSON)."""
    if not config:
        return DEFAULT_RULES
    try:
        key = orjson.dumps(config, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # not JSON (a JSONField never holds such): as any other bad config
        key = repr(config).encode()
    rules = _rules_cache.get(key)
    if rules is None:
        if len(_rules_cache) >= RULES_CACHE_SIZE:
            _rules_cache.clear()
        rules = _rules_cache[key] = rules_compile(config)
    return rules
