"""The baseline for the intake benchmark: the framework's ceiling on this machine.

A minimal FastAPI app under uvicorn that reads the body, parses the JSON and answers, the way
remediator's webhook does before any of its own work (no validation, no store)."""
import json

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/webhook/alertmanager")
async def webhook(request: Request) -> dict:
    body = json.loads(await request.body())
    return {"status": "accepted", "alerts": len(body.get("alerts", []))}


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}
