#!/usr/bin/env bash
# Stream a completion with curl. Hidden refinement rounds show up as SSE comment lines
# (": perfics round 1/2"); the final answer streams as ordinary OpenAI chunks.
set -euo pipefail
URL=${PERFICS_URL:-http://127.0.0.1:8000/v1}
curl -sN "$URL/chat/completions" \
  -H 'Content-Type: application/json' \
  -H 'X-Perfics-Max-Rounds: 1' \
  -d '{
        "model": "auto",
        "stream": true,
        "stream_options": {"include_usage": true},
        "max_tokens": 80,
        "messages": [{"role": "user", "content": "Write a short poem about rain."}]
      }'
