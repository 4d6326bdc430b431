// RBAC's decision for Roles and RoleBindings read from a manifest, as the stand-in API server's
// `authorize` hook: a request is allowed when a binding in its namespace names the user or one of its
// groups and the bound Role has a rule matching its API group, resource (with subresource), name and
// verb. Roles cannot grant non-resource URLs or anything outside their namespace.
import { loadAllYaml } from "@kubernetes/client-node";
import type { AuthorizationAttributes } from "./kube-api-server/index.js";

interface PolicyRule {
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  verbs: string[];
}

interface Role {
  kind: "Role";
  metadata: { name: string; namespace: string };
  rules?: PolicyRule[];
}

interface RoleBinding {
  kind: "RoleBinding";
  metadata: { name: string; namespace: string };
  roleRef: { kind: string; name: string };
  subjects?: Array<{ kind: string; name: string; namespace?: string }>;
}

export interface RbacAuthorizer {
  authorize(attributes: AuthorizationAttributes): boolean;
  /** Every decision taken, in order. */
  decisions: Array<AuthorizationAttributes & { allowed: boolean }>;
}

export function rbacAuthorizerFromManifest(manifest: string): RbacAuthorizer {
  const objects = loadAllYaml(manifest) as Array<Role | RoleBinding | { kind: string }>;
  const roles = objects.filter((object): object is Role => object.kind === "Role");
  const bindings = objects.filter((object): object is RoleBinding => object.kind === "RoleBinding");
  if (roles.length === 0 || bindings.length === 0)
    throw new Error("the manifest has no Role or no RoleBinding");
  const decisions: RbacAuthorizer["decisions"] = [];

  const matches = (rule: PolicyRule, attributes: AuthorizationAttributes): boolean => {
    const resource = attributes.subresource
      ? `${attributes.resource}/${attributes.subresource}`
      : attributes.resource;
    const anyOf = (list: string[] | undefined, value: string | undefined) =>
      value !== undefined && (list ?? []).some((entry) => entry === "*" || entry === value);
    return (
      anyOf(rule.apiGroups, "") &&
      anyOf(rule.resources, resource) &&
      anyOf(rule.verbs, attributes.verb) &&
      (rule.resourceNames === undefined ||
        rule.resourceNames.length === 0 ||
        anyOf(rule.resourceNames, attributes.name))
    );
  };

  const decide = (attributes: AuthorizationAttributes): boolean => {
    if (!attributes.resourceRequest || attributes.namespace === undefined) return false;
    return bindings.some((binding) => {
      if (binding.metadata.namespace !== attributes.namespace || binding.roleRef.kind !== "Role")
        return false;
      const bound = (binding.subjects ?? []).some(
        (subject) =>
          (subject.kind === "User" && subject.name === attributes.user) ||
          (subject.kind === "Group" && attributes.groups.includes(subject.name)),
      );
      if (!bound) return false;
      const role = roles.find(
        (candidate) =>
          candidate.metadata.name === binding.roleRef.name &&
          candidate.metadata.namespace === binding.metadata.namespace,
      );
      return (role?.rules ?? []).some((rule) => matches(rule, attributes));
    });
  };

  return {
    decisions,
    authorize(attributes) {
      const allowed = decide(attributes);
      decisions.push({ ...attributes, allowed });
      return allowed;
    },
  };
}
