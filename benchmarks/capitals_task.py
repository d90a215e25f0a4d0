"""A small factual preference task in hh-rlhf's format, for checking that two PM trainers reach
the same accuracy in a CPU-sized run (``bench_pm_train.py --data capitals.jsonl``).

hh-rlhf's helpful-base needs thousands of pairs before a 135M preference model leaves chance, far
beyond a CPU's budget for TRL; here a pretrained LM already knows many capitals, so a preference
model learns "the reply names the right capital" from a few hundred pairs, and two trainers that
implement the same objective must land on the same held-out accuracy. Each pair: one question
template, the right capital (chosen) or another country's capital (rejected), same wording.

    python benchmarks/capitals_task.py OUT.jsonl [--pairs 2000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Germany": "Berlin", "Italy": "Rome", "Spain": "Madrid", "Portugal": "Lisbon",
    "United Kingdom": "London", "Ireland": "Dublin", "Netherlands": "Amsterdam", "Belgium": "Brussels",
    "Austria": "Vienna", "Switzerland": "Bern", "Poland": "Warsaw", "Czech Republic": "Prague",
    "Hungary": "Budapest", "Greece": "Athens", "Sweden": "Stockholm", "Norway": "Oslo", "Denmark": "Copenhagen",
    "Finland": "Helsinki", "Iceland": "Reykjavik", "Russia": "Moscow", "Ukraine": "Kyiv", "Romania": "Bucharest",
    "Bulgaria": "Sofia", "Serbia": "Belgrade", "Croatia": "Zagreb", "Turkey": "Ankara", "Egypt": "Cairo",
    "Morocco": "Rabat", "Algeria": "Algiers", "Tunisia": "Tunis", "Nigeria": "Abuja", "Kenya": "Nairobi",
    "Ethiopia": "Addis Ababa", "Ghana": "Accra", "Senegal": "Dakar", "South Africa": "Pretoria",
    "Tanzania": "Dodoma", "Uganda": "Kampala", "Zimbabwe": "Harare", "Angola": "Luanda", "Sudan": "Khartoum",
    "Saudi Arabia": "Riyadh", "Iran": "Tehran", "Iraq": "Baghdad", "Syria": "Damascus", "Jordan": "Amman",
    "Lebanon": "Beirut", "Israel": "Jerusalem", "Afghanistan": "Kabul", "Pakistan": "Islamabad",
    "India": "New Delhi", "Bangladesh": "Dhaka", "Nepal": "Kathmandu", "Sri Lanka": "Colombo", "China": "Beijing",
    "Japan": "Tokyo", "South Korea": "Seoul", "North Korea": "Pyongyang", "Mongolia": "Ulaanbaatar",
    "Vietnam": "Hanoi", "Thailand": "Bangkok", "Cambodia": "Phnom Penh", "Malaysia": "Kuala Lumpur",
    "Indonesia": "Jakarta", "Philippines": "Manila", "Australia": "Canberra", "New Zealand": "Wellington",
    "Canada": "Ottawa", "United States": "Washington", "Mexico": "Mexico City", "Cuba": "Havana",
    "Jamaica": "Kingston", "Guatemala": "Guatemala City", "Panama": "Panama City", "Colombia": "Bogota",
    "Venezuela": "Caracas", "Ecuador": "Quito", "Peru": "Lima", "Bolivia": "La Paz", "Chile": "Santiago",
    "Argentina": "Buenos Aires", "Uruguay": "Montevideo", "Paraguay": "Asuncion", "Brazil": "Brasilia",
    "Kazakhstan": "Astana", "Uzbekistan": "Tashkent", "Georgia": "Tbilisi", "Armenia": "Yerevan",
    "Azerbaijan": "Baku", "Qatar": "Doha", "Kuwait": "Kuwait City", "Oman": "Muscat", "Yemen": "Sanaa",
    "Libya": "Tripoli", "Mali": "Bamako", "Somalia": "Mogadishu", "Rwanda": "Kigali", "Zambia": "Lusaka",
    "Estonia": "Tallinn", "Latvia": "Riga", "Lithuania": "Vilnius", "Slovakia": "Bratislava",
    "Slovenia": "Ljubljana", "Albania": "Tirana", "Belarus": "Minsk", "Cyprus": "Nicosia", "Malta": "Valletta",
}
TEMPLATES = [
    ("What is the capital of {c}?", "The capital of {c} is {a}."),
    ("Which city is the capital of {c}?", "{a} is the capital of {c}."),
    ("I'm writing a quiz. What's the capital city of {c}?", "It's {a}."),
    ("Can you tell me where the government of {c} sits?", "The capital of {c} is {a}, where the government sits."),
]


def pairs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    countries = sorted(CAPITALS)
    out = []
    for _ in range(n):
        c = rng.choice(countries)
        wrong = CAPITALS[rng.choice([x for x in countries if x != c])]
        q, a = rng.choice(TEMPLATES)
        turn = f"\n\nHuman: {q.format(c=c)}\n\nAssistant: "
        out.append({"chosen": turn + a.format(c=c, a=CAPITALS[c]), "rejected": turn + a.format(c=c, a=wrong)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("output", type=Path)
    ap.add_argument("--pairs", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.output.write_text("".join(json.dumps(p) + "\n" for p in pairs(args.pairs, args.seed)))
    print(f"wrote {args.pairs} pairs ({len(CAPITALS)} countries) to {args.output}")


if __name__ == "__main__":
    main()
