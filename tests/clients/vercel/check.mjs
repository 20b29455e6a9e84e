// The Vercel AI SDK against botline's /v1, as an app would use it; prints one JSON line per mode.
// Usage: node check.mjs BASE_URL API_KEY MODEL (generate|stream|tools)
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, apiKey, modelName, mode] = process.argv.slice(2);
const model = createOpenAI({ baseURL, apiKey }).chat(modelName);
const prompt = "Capital of France?";

async function run() {
  if (mode === "generate") {
    const result = await generateText({ model, prompt, maxRetries: 0 });
    return { text: result.text, usage: result.usage, finishReason: result.finishReason };
  }
  if (mode === "stream") {
    const result = streamText({ model, prompt, maxRetries: 0 });
    const chunks = [];
    for await (const delta of result.textStream) chunks.push(delta);
    return { chunks, usage: await result.usage, finishReason: await result.finishReason };
  }
  if (mode === "tools") {
    const openDoor = tool({ description: "Opens a door", inputSchema: z.object({ door: z.string() }) });
    const result = await generateText({ model, prompt: "Open the front door", tools: { open_door: openDoor }, maxRetries: 0 });
    return { toolCalls: result.toolCalls.map((c) => ({ name: c.toolName, input: c.input, id: c.toolCallId })),
             finishReason: result.finishReason };
  }
  throw new Error(`unknown mode ${mode}`);
}

run().then((out) => console.log(JSON.stringify(out)), (err) => { console.error(String(err)); process.exit(1); });
