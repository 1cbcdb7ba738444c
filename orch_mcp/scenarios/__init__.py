"""Scenario scripts that play summoner, moogle and chocobo with the library, without any LLM."""
