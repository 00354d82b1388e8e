"""App names: the rule they follow, and random Heroku-style ones (`sharp-rain-871`)."""

from __future__ import annotations

import random
import re

from waka.controller._errors import InvalidInput

APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,29}$")

_ADJECTIVES = (
    "ancient autumn billowing bitter black blue bold broad broken calm cold cool crimson curly "
    "damp dark dawn delicate divine dry empty falling fancy flat floral fragrant frosty gentle "
    "green hidden holy icy jolly late lingering little lively long lucky misty morning muddy "
    "nameless noisy odd old orange patient plain polished proud purple quiet rapid red restless "
    "rough round royal shiny shrill shy silent small snowy soft solitary sparkling spring square "
    "steep still summer super sweet throbbing tight tiny twilight wandering weathered white wild "
    "winter wispy withered yellow young"
).split()
_NOUNS = (
    "art band bar base bird block boat bonus bread breeze brook bush butterfly cake cell cherry "
    "cloud credit darkness dawn dew disk dream dust feather field fire firefly flower fog forest "
    "frog frost glade glitter grass hall hat haze heart hill king lab lake leaf limit math meadow "
    "mode moon morning mountain mouse mud night paper pine poetry pond queen rain recipe "
    "resonance rice river salad scene sea shadow shape silence sky smoke snow snowflake sound "
    "star sun sunset surf term thunder tooth tree truth union unit violet voice water waterfall "
    "wave wildflower wind wood"
).split()


def check_app_name(name: str) -> str:
    if not APP_NAME.match(name):
        raise InvalidInput(
            f"Invalid app name {name!r}: use 2 to 30 characters, lowercase letters, digits and "
            "dashes, starting with a letter."
        )
    return name


def random_app_name(rng: random.Random) -> str:
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(10, 100_000)}"
