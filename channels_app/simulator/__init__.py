"""Local fake of Twilio's Messages API and SendGrid's v3 Mail Send, for development, tests and
benchmarks: the real SDKs run against it unchanged, and it posts signed webhooks back to
Touchline. It never touches the database: it plays the outside world."""

from .config import SimulatorConfig
from .server import Simulator, start_simulator

__all__ = ["Simulator", "SimulatorConfig", "start_simulator"]
