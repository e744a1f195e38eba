"""`devbox report`: one page (and its JSON) with what every environment runs, the last integration and parity
results, and the development topology. Gathering (``gather``), the pure model (``model``), the picture (``svg``)
and the page (``render``).
"""
