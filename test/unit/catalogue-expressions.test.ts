import { describe, expect, it } from "vitest";
import { decodePageToken, encodePageToken } from "../../lambdas/core/catalogue/page-token.js";
import {
  attributeNamesIn,
  buildConditionalUpdate,
  valueList,
} from "../../lambdas/core/catalogue/update-expression.js";
import { InvalidInputError } from "../../lambdas/core/errors.js";

describe("buildConditionalUpdate", () => {
  it("refers to every attribute through a name placeholder, reserved words included", () => {
    const update = buildConditionalUpdate({
      set: { status: "UPLOADED", bytes: 10, key: "a/b.db" },
      remove: ["owner"],
      condition: "#status = :expected",
      conditionValues: { ":expected": "IN_PROGRESS" },
    });
    expect(update).toEqual({
      UpdateExpression: "SET #status = :set_status, #bytes = :set_bytes, #key = :set_key REMOVE #owner",
      ConditionExpression: "#status = :expected",
      ExpressionAttributeNames: { "#status": "status", "#bytes": "bytes", "#key": "key", "#owner": "owner" },
      ExpressionAttributeValues: {
        ":set_status": "UPLOADED",
        ":set_bytes": 10,
        ":set_key": "a/b.db",
        ":expected": "IN_PROGRESS",
      },
    });
  });

  it("leaves undefined values out instead of writing or removing them", () => {
    const update = buildConditionalUpdate({ set: { versionId: undefined, bytes: 1 } });
    expect(update.UpdateExpression).toBe("SET #bytes = :set_bytes");
    expect(update.ExpressionAttributeNames).toEqual({ "#bytes": "bytes" });
    expect(update.ConditionExpression).toBeUndefined();
  });

  it("omits the value map when only removing", () => {
    const update = buildConditionalUpdate({ remove: ["owner", "heldUntilEpochMs"] });
    expect(update).toEqual({
      UpdateExpression: "REMOVE #owner, #heldUntilEpochMs",
      ExpressionAttributeNames: { "#owner": "owner", "#heldUntilEpochMs": "heldUntilEpochMs" },
    });
  });

  it("refuses updates DynamoDB would reject, with the reason", () => {
    expect(() => buildConditionalUpdate({ set: { only: undefined } })).toThrow(/at least one attribute/);
    expect(() => buildConditionalUpdate({ set: { owner: "a" }, remove: ["owner"] })).toThrow(
      /both set and removed/,
    );
    expect(() => buildConditionalUpdate({ set: { "a.b": 1 } })).toThrow(/not a plain attribute name/);
    expect(() =>
      buildConditionalUpdate({ set: { a: 1 }, condition: "#a = :x", conditionValues: { ":y": 1, ":x": 2 } }),
    ).toThrow(/not used by any expression: :y/);
    expect(() => buildConditionalUpdate({ set: { a: 1 }, conditionValues: { ":set_a": 2 } })).toThrow(
      /must start/,
    );
  });
});

describe("expression helpers", () => {
  it("derives the name map from several expressions, each name once", () => {
    expect(
      attributeNamesIn("#cluster = :c AND begins_with(#sk, :p)", undefined, "#status IN (:s0)", "#sk > :x"),
    ).toEqual({
      "#cluster": "cluster",
      "#sk": "sk",
      "#status": "status",
    });
  });

  it("builds an IN list with one placeholder per value", () => {
    expect(valueList("status", ["FAILED", "UPLOADED"])).toEqual({
      list: "(:status0, :status1)",
      values: { ":status0": "FAILED", ":status1": "UPLOADED" },
    });
    expect(() => valueList("status", [])).toThrow(/at least one value/);
  });
});

describe("page tokens", () => {
  it("round-trip the key of the row to continue after", () => {
    const key = { cluster: "prod", sk: "snapshot#20261124T193600Z-3f9a1c" };
    const token = encodePageToken(key);
    expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodePageToken(token, "prod")).toEqual(key);
  });

  it("are refused for another cluster, outside the snapshot rows, or when they are not ours", () => {
    const token = encodePageToken({ cluster: "prod", sk: "snapshot#x" });
    expect(() => decodePageToken(token, "staging")).toThrow(
      /belongs to a listing of cluster prod, not staging/,
    );
    expect(() => decodePageToken(encodePageToken({ cluster: "prod", sk: "lease" }), "prod")).toThrow(
      InvalidInputError,
    );
    expect(() => decodePageToken("%%%", "prod")).toThrow(InvalidInputError);
    expect(() => decodePageToken(Buffer.from("[1,2]").toString("base64url"), "prod")).toThrow(
      InvalidInputError,
    );
    expect(() =>
      decodePageToken(Buffer.from('{"cluster":"prod","sk":7}').toString("base64url"), "prod"),
    ).toThrow(InvalidInputError);
  });
});
