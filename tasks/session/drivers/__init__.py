"""Media drivers behind `tasks.session.driver.MediaDriver`: `webrtc` (the browser) and `headless` (REST).

Import the one a run uses from its module: the WebRTC driver pulls in aiortc and PyAV.
"""
