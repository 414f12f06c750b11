"""Deterministic miniature versions of VLM's five tasks (stdlib only).

Each generator ``gen_<task>(n, seed)`` returns ``n`` :class:`Example` s in the
same input conventions as the real datasets' loaders, so the whole pipeline
runs offline. The targets follow fixed rules from the source, so a model
that learned the task scores far above one that did not.
"""

from __future__ import annotations

import random

from edgevlm.train.tasks import Example

NAMES = [
    "The Eagle",
    "Blue Spice",
    "Cotto",
    "Giraffe",
    "Zizzi",
    "Aromi",
    "Fitzbillies",
    "The Mill",
    "Loch Fyne",
    "Wildwood",
    "The Punter",
    "Alimentum",
    "Clowns",
    "The Phoenix",
    "Strada",
    "Taste of Cambridge",
]
EAT = ["pub", "restaurant", "coffee shop"]
FOOD = ["French", "Italian", "Chinese", "Indian", "Japanese", "English", "Fast food"]
PRICE = ["cheap", "moderate", "high", "less than £20", "more than £30"]
RATING = ["low", "average", "high", "5 out of 5", "1 out of 5"]
AREA = ["riverside", "city centre"]
NEAR = ["Burger King", "Café Rouge", "The Bakers", "Raja Indian Cuisine", "Crowne Plaza Hotel", "Avalon"]

PEOPLE = ["anna", "ben", "carl", "dora", "eva", "finn", "gina", "hugo", "ida", "jack", "kim", "leo"]
CITIES = ["paris", "london", "rome", "berlin", "oslo", "madrid", "vienna", "dublin", "lisbon", "prague"]
COLORS = ["red", "blue", "green", "black", "white", "yellow"]
PETS = ["dog", "cat", "bird", "horse", "fish", "rabbit"]
JOBS = ["teacher", "doctor", "baker", "farmer", "pilot", "painter", "nurse", "driver"]
HOBBIES = ["reading", "swimming", "cooking", "hiking", "singing", "dancing", "fishing", "painting"]
THINGS = ["bridge", "school", "park", "library", "hospital", "stadium", "museum", "station"]
MONTHS = ["january", "march", "may", "june", "august", "october", "december"]
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday"]

DE_NOUNS = {
    "hund": ("der", "dog"),
    "katze": ("die", "cat"),
    "kind": ("das", "child"),
    "mann": ("der", "man"),
    "frau": ("die", "woman"),
    "vogel": ("der", "bird"),
    "pferd": ("das", "horse"),
    "lehrer": ("der", "teacher"),
}
DE_VERBS = {"sieht": "sees", "mag": "likes", "findet": "finds", "hört": "hears", "ruft": "calls", "sucht": "seeks"}
DE_ADJS = {"grosse": "big", "kleine": "small", "rote": "red", "alte": "old", "junge": "young"}
DE_ADVS = {"heute": "today", "morgen": "tomorrow", "oft": "often", "jetzt": "now"}


def _nlg_texts(attrs: dict[str, str]) -> list[str]:
    """Two references for one meaning representation."""
    n = attrs["name"]
    kind = attrs.get("eatType", "place")
    a = f"{n} is a {kind}"
    if "food" in attrs:
        a += f" serving {attrs['food']} food"
    if "area" in attrs:
        a += f" in the {attrs['area']} area"
    if "near" in attrs:
        a += f" near {attrs['near']}"
    a += "."
    if "priceRange" in attrs:
        a += f" It has a {attrs['priceRange']} price range."
    if "customer rating" in attrs:
        a += f" Its customer rating is {attrs['customer rating']}."
    if "familyFriendly" in attrs:
        a += " It is family friendly." if attrs["familyFriendly"] == "yes" else " It is not family friendly."
    b = f"There is a {kind} called {n}"
    if "area" in attrs:
        b += f" in the {attrs['area']}"
    b += "."
    if "food" in attrs:
        b += f" They serve {attrs['food']} food."
    return [a, b]


def gen_nlg(n: int, seed: int = 0) -> list[Example]:
    """E2E-style data-to-text: ``name[X], eatType[Y], ...`` -> a description."""
    rng = random.Random(f"nlg{seed}")
    pools = {
        "eatType": EAT,
        "food": FOOD,
        "priceRange": PRICE,
        "customer rating": RATING,
        "area": AREA,
        "familyFriendly": ["yes", "no"],
        "near": NEAR,
    }
    out = []
    for _ in range(n):
        keys = [k for k in pools if rng.random() < 0.5] or ["food"]
        attrs = {"name": rng.choice(NAMES), **{k: rng.choice(pools[k]) for k in keys}}
        mr = ", ".join(f"{k}[{v}]" for k, v in attrs.items())
        refs = _nlg_texts(attrs)
        out.append(Example(mr, refs[0], refs))
    return out


def _de_np(rng: random.Random) -> tuple[str, str]:
    noun = rng.choice(list(DE_NOUNS))
    det, en = DE_NOUNS[noun]
    if rng.random() < 0.4:
        adj = rng.choice(list(DE_ADJS))
        return f"{det} {adj} {noun}", f"the {DE_ADJS[adj]} {en}"
    return f"{det} {noun}", f"the {en}"


def gen_mt(n: int, seed: int = 0) -> list[Example]:
    """Toy German->English: word-by-word lexicon plus verb-second reordering after an adverb."""
    rng = random.Random(f"mt{seed}")
    out = []
    for _ in range(n):
        (s_de, s_en), (o_de, o_en) = _de_np(rng), _de_np(rng)
        verb = rng.choice(list(DE_VERBS))
        if rng.random() < 0.5:
            adv = rng.choice(list(DE_ADVS))
            de, en = f"{adv} {verb} {s_de} {o_de} .", f"{DE_ADVS[adv]} {s_en} {DE_VERBS[verb]} {o_en} ."
        else:
            de, en = f"{s_de} {verb} {o_de} .", f"{s_en} {DE_VERBS[verb]} {o_en} ."
        out.append(Example(de, en))
    return out


def _qa_story(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    people = rng.sample(PEOPLE, 2)
    sents, qas = [], []
    for p in people:
        city, color, pet, job = rng.choice(CITIES), rng.choice(COLORS), rng.choice(PETS), rng.choice(JOBS)
        sents += [f"{p} lives in {city} .", f"{p} has a {color} {pet} .", f"{p} works as a {job} ."]
        qas += [
            (f"where does {p} live ?", city),
            (f"what pet does {p} have ?", f"a {color} {pet}"),
            (f"what is the job of {p} ?", job),
        ]
    rng.shuffle(sents)
    return " ".join(sents), qas


def gen_qa(n: int, seed: int = 0) -> list[Example]:
    """Extractive conversational QA: a story, earlier question/answer turns, then a question."""
    rng = random.Random(f"qa{seed}")
    out = []
    for _ in range(n):
        story, qas = _qa_story(rng)
        turns = rng.sample(qas, rng.randint(1, 3))
        hist = " ".join(f"<question> {q} <answer> {a}" for q, a in turns[:-1])
        src = f"{story} {hist} <question> {turns[-1][0]}".replace("  ", " ")
        out.append(Example(src, turns[-1][1]))
    return out


def gen_summarization(n: int, seed: int = 0) -> list[Example]:
    """News-like article with distractor sentences -> a one-line headline of its key facts."""
    rng = random.Random(f"sum{seed}")
    out = []
    for _ in range(n):
        city, thing, cost = rng.choice(CITIES), rng.choice(THINGS), rng.randint(2, 90)
        month, day, mayor = rng.choice(MONTHS), rng.choice(DAYS), rng.choice(PEOPLE)
        key = [
            f"{city} council approved a new {thing} on {day} .",
            f"the {thing} will cost {cost} million euros .",
            f"work on the {thing} will start in {month} .",
        ]
        filler = [
            f"mayor {mayor} said the project would help local families .",
            f"some people in {city} asked for a {rng.choice(THINGS)} instead .",
            f"the weather in {city} was {rng.choice(['cold', 'warm', 'rainy'])} on {day} .",
            f"{rng.choice(PEOPLE)} works as a {rng.choice(JOBS)} near the old {rng.choice(THINGS)} .",
        ]
        body = key[:1] + rng.sample(filler + key[1:], len(filler) + 2)
        summary = f"{city} approves {cost} million euro {thing} , work starts in {month} ."
        out.append(Example(" ".join(body), summary))
    return out


def gen_dialogue(n: int, seed: int = 0) -> list[Example]:
    """Persona chat: persona facts, a short history, and a reply consistent with the persona."""
    rng = random.Random(f"dia{seed}")
    asks = [
        ("what do you do for fun ?", "hobby"),
        ("do you have any pets ?", "pet"),
        ("where do you live ?", "city"),
        ("what is your job ?", "job"),
    ]
    out = []
    for _ in range(n):
        f = {"hobby": rng.choice(HOBBIES), "pet": rng.choice(PETS), "city": rng.choice(CITIES), "job": rng.choice(JOBS)}
        persona = [
            f"i like {f['hobby']} .",
            f"i have a {f['pet']} .",
            f"i live in {f['city']} .",
            f"i am a {f['job']} .",
        ]
        rng.shuffle(persona)
        reply = {
            "hobby": f"i like {f['hobby']} . what about you ?",
            "pet": f"yes , i have a {f['pet']} .",
            "city": f"i live in {f['city']} .",
            "job": f"i am a {f['job']} .",
        }
        q1, q2 = rng.sample(asks, 2)
        hist = f"<user> hi , how are you ? <system> i am fine . <user> {q1[0]} <system> {reply[q1[1]]} <user> {q2[0]}"
        if rng.random() < 0.5:
            hist = f"<user> {q2[0]}"
        out.append(Example(" ".join(persona) + " " + hist, reply[q2[1]]))
    return out


GENERATORS = {"nlg": gen_nlg, "mt": gen_mt, "qa": gen_qa, "summarization": gen_summarization, "dialogue": gen_dialogue}


def mini_task(name: str, split: str = "train", n: int | None = None) -> list[Example]:
    """Built-in mini dataset ``name``; ``split`` in train/valid/test uses disjoint seeds."""
    seeds = {"train": 0, "valid": 1, "test": 2}
    if split not in seeds:
        raise ValueError(f"split must be one of {sorted(seeds)}, got {split!r}")
    if n is None:
        n = 4000 if split == "train" else 100
    if split == "train":
        return GENERATORS[name](n, 0)
    seen = {e.source for e in GENERATORS[name](4000, 0)}
    fresh = [e for e in GENERATORS[name](4 * n, seeds[split]) if e.source not in seen]
    return fresh[:n]
