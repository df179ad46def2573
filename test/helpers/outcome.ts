// What an SDK call came to, as one comparable string: "200", or the HTTP
// status and error name it failed with ("404 NoSuchKey").
export async function outcome(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return '200';
  } catch (err) {
    return `${(err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode} ${(err as Error).name}`;
  }
}
