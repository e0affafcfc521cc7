/*
 * Limits on what a request may ask: query depth and cost (validation rules),
 * and, in production, no introspection and no "did you mean" suggestions.
 * (Request body size is grafserv's maxRequestLength; Ruru is off in
 * production by the preset.)
 */
import {
  ASTVisitor,
  FragmentDefinitionNode,
  GraphQLError,
  Kind,
  NoSchemaIntrospectionCustomRule,
  SelectionSetNode,
  ValidationContext,
  ValidationRule,
} from 'postgraphile/graphql';

export interface Limits {
  maxDepth: number;
  /** The most fields (counted through fragments, each alias counted) one operation may select. */
  maxCost: number;
  production: boolean;
}

/** Depth and field count of a selection set, fragments expanded (a fragment cycle is refused by graphql-js itself). */
function measure(
  set: SelectionSetNode | undefined,
  fragments: Record<string, FragmentDefinitionNode>,
  seen: Set<string> = new Set(),
): { depth: number; fields: number } {
  if (!set) return { depth: 0, fields: 0 };
  let depth = 0;
  let fields = 0;
  for (const selection of set.selections) {
    if (selection.kind === Kind.FIELD) {
      if (selection.name.value.startsWith('__')) continue;
      const inner = measure(selection.selectionSet, fragments, seen);
      depth = Math.max(depth, 1 + inner.depth);
      fields += 1 + inner.fields;
    } else {
      const name = selection.kind === Kind.FRAGMENT_SPREAD ? selection.name.value : null;
      if (name && seen.has(name)) continue;
      const inner = measure(
        selection.kind === Kind.INLINE_FRAGMENT ? selection.selectionSet : fragments[name!]?.selectionSet,
        fragments,
        name ? new Set([...seen, name]) : seen,
      );
      depth = Math.max(depth, inner.depth);
      fields += inner.fields;
    }
  }
  return { depth, fields };
}

function limitsRule(limits: Limits): ValidationRule {
  return (context: ValidationContext): ASTVisitor => {
    const fragments: Record<string, FragmentDefinitionNode> = {};
    for (const definition of context.getDocument().definitions) {
      if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments[definition.name.value] = definition;
    }
    return {
      OperationDefinition(operation) {
        const { depth, fields } = measure(operation.selectionSet, fragments);
        if (depth > limits.maxDepth) {
          context.reportError(new GraphQLError(`Query too deep: depth ${depth}, at most ${limits.maxDepth}`, {
            nodes: [operation], extensions: { code: 'QUERY_TOO_DEEP' } }));
        }
        if (fields > limits.maxCost) {
          context.reportError(new GraphQLError(`Query too large: ${fields} fields, at most ${limits.maxCost}`, {
            nodes: [operation], extensions: { code: 'QUERY_TOO_COSTLY' } }));
        }
      },
    };
  };
}

/** The rule, reporting its errors without "Did you mean …?" suggestions (which would reveal the schema). */
function withoutSuggestions(rule: ValidationRule): ValidationRule {
  return (context) => {
    const report = context.reportError.bind(context);
    const quiet: ValidationContext = Object.create(context);
    quiet.reportError = (error) =>
      report(new GraphQLError(error.message.replace(/ Did you mean .*$/, ''), { nodes: error.nodes, extensions: error.extensions }));
    return rule(quiet);
  };
}

export function makeHardeningPlugin(limits: Limits): GraphileConfig.Plugin {
  return {
    name: 'FlowIntegrityHardeningPlugin',
    version: '1.0.0',
    grafserv: {
      middleware: {
        setPreset(next, event) {
          event.validationRules.push(limitsRule(limits));
          if (limits.production) {
            event.validationRules.push(NoSchemaIntrospectionCustomRule);
            event.validationRules.splice(0, event.validationRules.length, ...event.validationRules.map(withoutSuggestions));
          }
          return next();
        },
      },
    },
  };
}
