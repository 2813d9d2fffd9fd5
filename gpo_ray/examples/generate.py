"""Writes the data of the shipped examples (orders.jsonl, messages.jsonl) from fixed seeds.

    python -m gpo_ray.examples.generate        # rewrites both files; a test checks that this changes nothing
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

_NAMES = ["Ana Costa", "Ben Okafor", "Chen Wei", "Dana Levi", "Emil Novak", "Fatima Khan", "Gus Berg", "Hana Sato",
          "Ivan Petrov", "Julia Rossi", "Karim Haddad", "Lena Vogel", "Marta Silva", "Nils Holm", "Olga Ivanova",
          "Paul Martin"]
_PRODUCTS = ["desk lamp", "office chair", "coffee mug", "notebook", "water bottle", "backpack", "keyboard",
             "monitor stand"]
_CITIES = ["Lisbon", "Lagos", "Shanghai", "Haifa", "Prague", "Karachi", "Oslo", "Osaka", "Kazan", "Turin", "Beirut",
           "Munich"]
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 8: "eight", 10: "ten", 12: "twelve"}
_ORDER_TEMPLATES = [
    "Hello, this is {customer}. Please send {quantity_text} {product_plural} to our office in {city}. Thanks!",
    "Order from {customer} ({city}): {quantity} x {product}.",
    "{customer} here - could I get {quantity_text} {product_plural}? Delivery to {city}, please.",
    "Hi! We would like {quantity} of the {product} model, shipped to {city}. Best regards, {customer}",
    "Dear shop, I am ordering {quantity_text} {product_plural} for our team in {city}. Kind regards, {customer}.",
    "Please deliver {quantity} {product_plural} to {city}. The order is for {customer}.",
]


def orders(seed: int = 7, count: int = 60) -> list[dict]:
    """Order messages and the fields a reply must extract from each."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        quantity = rng.choice(sorted(_NUMBER_WORDS))
        product, city, customer = rng.choice(_PRODUCTS), rng.choice(_CITIES), rng.choice(_NAMES)
        template = _ORDER_TEMPLATES[i % len(_ORDER_TEMPLATES)]
        message = template.format(customer=customer, city=city, product=product, quantity=quantity,
                                  quantity_text=_NUMBER_WORDS[quantity] if rng.random() < 0.5 else str(quantity),
                                  product_plural=product if quantity == 1 else product + "s")
        rows.append({"order_id": f"O-{i + 1}", "message": message, "customer": customer, "product": product,
                     "quantity": quantity, "city": city})
    return rows


_PROBLEMS = [
    ("My {item} arrived broken.", "damaged"),
    ("The {item} I ordered two weeks ago has still not arrived.", "late"),
    ("I was charged twice for the {item}.", "billing"),
    ("The {item} is not the colour I ordered.", "wrong item"),
    ("The {item} stopped working after three days.", "faulty"),
]
_ASKS = ["What can you do?", "I want my money back.", "Can I return it?", "Please help.", "How do I get a refund?"]
_ITEMS = ["kettle", "headphones", "jacket", "phone case", "lamp", "blender", "backpack", "watch"]


def messages(seed: int = 11, count: int = 30) -> list[dict]:
    """Customer messages a support reply answers; no reference reply: the judge's rubric decides."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        problem, kind = rng.choice(_PROBLEMS)
        rows.append({"message_id": f"M-{i + 1}", "kind": kind,
                     "message": f"{problem.format(item=rng.choice(_ITEMS))} {rng.choice(_ASKS)}"})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8", newline="\n")


def main() -> None:
    write_jsonl(HERE / "orders" / "orders.jsonl", orders())
    write_jsonl(HERE / "replies" / "messages.jsonl", messages())


if __name__ == "__main__":
    main()
