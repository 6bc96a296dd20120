"""A sample tool for the demo pipelines: weather that never needs the network.

Register it in YAML with either form::

    tools: {type: tools.router, params: {functions: {get_weather: "processors.tools.examples:get_weather"}}}
    tools: {type: tools.router, params: {modules: [processors.tools.examples]}}
"""

from __future__ import annotations

from typing import Literal

from .schema import ToolError, tool

__all__ = ["KNOWN_CITIES", "get_weather"]

#: The fake weather, by lower-case city name: (whole degrees Celsius, conditions). Whole
#: numbers, so that a spoken answer says "18 degrees", not "18.0 degrees".
KNOWN_CITIES: dict[str, tuple[int, str]] = {
    "paris": (18, "partly cloudy"),
    "london": (14, "light rain"),
    "berlin": (16, "overcast"),
    "new york": (22, "sunny"),
    "tokyo": (25, "humid and clear"),
    "sydney": (20, "windy"),
    "madrid": (27, "sunny"),
    "rome": (24, "clear"),
    "san francisco": (17, "foggy"),
    "boston": (12, "cold and clear"),
}


@tool
def get_weather(location: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> dict:
    """Get the current weather for a city.

    Args:
        location: City name, for example "Paris" or "New York".
        unit: Temperature unit the answer should use.
    """
    key = " ".join(location.lower().replace(",", " ").split())
    if key not in KNOWN_CITIES:
        # Also accept "Paris, France" and the like: the first known city named wins.
        key = next((city for city in KNOWN_CITIES if city in key), key)
    if key not in KNOWN_CITIES:
        known = ", ".join(city.title() for city in KNOWN_CITIES)
        raise ToolError(f"no weather data for {location!r}; known cities: {known}")
    temp_c, conditions = KNOWN_CITIES[key]
    result: dict = {"location": key.title(), "temp_c": temp_c, "conditions": conditions}
    if unit == "fahrenheit":
        result["temp_f"] = round(temp_c * 9 / 5 + 32)
    return result
