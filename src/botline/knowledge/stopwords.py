"""Stopwords of Portuguese, Spanish and English, accents folded: words too common to say what a text is about."""

from __future__ import annotations

_PORTUGUESE = """
a ao aos as ate com como da das de dela dele deles do dos e ela elas ele eles em entre era eram essa esse
esta estao este eu foi for foram ha isso isto ja lhe mais mas me mesmo meu minha muito na nao nas nem no
nos nossa nosso num numa o os ou para pela pelas pelo pelos por qual quando que quem se sem ser seu seus
sua suas so tambem te tem ter teu tua um uma umas uns voce voces vos sao seja sobre tenho tinha qual
"""
_SPANISH = """
al algo como con cual de del donde el ella ellas ellos en entre era es esa ese esta estan este esto fue
ha han hay la las le les lo los mas me mi mis muy ni no nos o otra otro para pero por porque que se si
sin sobre son su sus tambien te tiene tu un una unas uno unos usted ustedes y ya yo
"""
_ENGLISH = """
a about an and are as at be been but by can could did do does for from had has have he her his how i if
in into is it its me my no not of on or our she so than that the their them then there these they this
those to was we were what when where which who whom why will with would you your
"""

STOPWORDS = frozenset((_PORTUGUESE + _SPANISH + _ENGLISH).split())
