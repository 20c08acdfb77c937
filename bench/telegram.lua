-- wrk script for bench/run.py: POSTs signed Telegram webhooks (private-chat text
-- messages) of about SIZE bytes, each with its own update_id.
--
--   wrk -t2 -c64 -d10s -s bench/telegram.lua URL -- BASE CHATS SIZE DATE SECRET
--
-- update_id = BASE + thread_number * 100000000 + per-thread counter, so ids never repeat
-- across threads (or across runs given different BASEs). The chat id cycles over CHATS
-- chats. Non-2xx answers are counted per thread in response() and summed in done(),
-- which prints "BENCH key value" lines for run.py to read.

local threads = {}
-- globals, not locals: done() reads them from each thread with thread:get()
counter = 0
non2xx = 0
first_bad = ""
local base, chats, size, date, secret = 0, 1000, 1024, 0, "benchsecret"
-- padding: words in random order, not one repeated letter, so that a store that
-- compresses its records is measured on text that compresses like a customer's message
local words = {
  "the", "to", "and", "you", "of", "is", "it", "that", "for", "on", "in", "your", "my",
  "this", "with", "have", "be", "are", "not", "we", "can", "please", "thanks", "hello",
  "order", "help", "when", "what", "will", "would", "could", "do", "delivery", "package",
  "arrived", "yesterday", "today", "tomorrow", "refund", "address", "number", "account",
  "payment", "card", "problem", "issue", "still", "waiting", "since", "last", "week",
  "again", "receipt", "invoice", "tracking", "store", "size", "colour", "broken", "wrong",
  "missing", "return", "exchange", "price", "discount", "code", "email", "phone", "call",
  "back", "soon", "possible", "morning", "evening", "weekend", "hours", "open", "closed",
  "Berlin", "Madrid", "Tokyo", "Lisbon", "Friday", "Monday", "18:30", "#4411", "12.50",
}
local pads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  base = tonumber(args[1]) or 0
  chats = tonumber(args[2]) or 1000
  size = tonumber(args[3]) or 1024
  date = tonumber(args[4]) or os.time()
  secret = args[5] or "benchsecret"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["X-Telegram-Bot-Api-Secret-Token"] = secret
  math.randomseed(base % 2147483647 + 1)
  for i = 1, 64 do
    local out = {}
    local n = 0
    while n < size do
      local w = words[math.random(#words)]
      out[#out + 1] = w
      n = n + #w + 1
    end
    pads[i] = table.concat(out, " ")
  end
end

local function update(id, chat, text)
  return string.format(
    '{"update_id":%d,"message":{"message_id":%d,' ..
    '"from":{"id":%d,"is_bot":false,"first_name":"Bench","language_code":"en"},' ..
    '"chat":{"id":%d,"first_name":"Bench","type":"private"},"date":%d,"text":"%s"}}',
    id, id, chat, chat, date, text)
end

function request()
  counter = counter + 1
  local id = base + tid * 100000000 + counter
  local chat = 100000 + id % chats
  local text = "bench message " .. id .. " "
  local pad = size - #update(id, chat, text)
  if pad > 0 then
    text = text .. string.sub(pads[counter % #pads + 1], 1, pad)
  end
  return wrk.format(nil, nil, nil, update(id, chat, text))
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if first_bad == "" then
      first_bad = status .. " " .. string.sub(body or "", 1, 200)
    end
  end
end

function done(summary, latency, requests)
  local bad, sent, example = 0, 0, ""
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("non2xx") or 0)
    sent = sent + (thread:get("counter") or 0)
    local b = thread:get("first_bad") or ""
    if example == "" then example = b end
  end
  local e = summary.errors
  io.write(string.format("BENCH requests %d\n", summary.requests))
  io.write(string.format("BENCH duration_us %d\n", summary.duration))
  io.write(string.format("BENCH non2xx %d\n", bad))
  io.write(string.format("BENCH generated %d\n", sent))
  io.write(string.format("BENCH errors_connect %d\n", e.connect))
  io.write(string.format("BENCH errors_read %d\n", e.read))
  io.write(string.format("BENCH errors_write %d\n", e.write))
  io.write(string.format("BENCH errors_timeout %d\n", e.timeout))
  io.write(string.format("BENCH errors_status %d\n", e.status))
  for _, p in ipairs({50, 90, 99}) do
    io.write(string.format("BENCH latency_p%d_us %d\n", p, latency:percentile(p)))
  end
  io.write(string.format("BENCH latency_max_us %d\n", latency.max))
  if example ~= "" then
    io.write("BENCH first_bad " .. string.gsub(example, "\n", " ") .. "\n")
  end
end
